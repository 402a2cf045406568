"""HTTP routes, one module per feature; each is thin and works through `server.deps`."""
