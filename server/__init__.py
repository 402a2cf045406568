"""Gateway: the FastAPI app that answers requests and records them."""
