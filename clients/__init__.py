"""Python SDK and the `ttrv` command line."""
