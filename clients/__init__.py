"""Python SDK of the TTRV gateway: `clients.sdk` has the sync and async clients.

It imports no other project package, only httpx, pydantic and pydantic-settings (a test checks it).
"""
