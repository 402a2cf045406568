"""`python -m server`: run the gateway (the same as `ttrv serve`)."""

from server.main import serve

if __name__ == "__main__":
    serve()
