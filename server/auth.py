"""API keys on public routes, a separate admin token on admin routes (both `Authorization: Bearer ...`).

401: no credentials, or credentials this gateway does not know. 403: known credentials that may not use
this route (an API key on an admin route), or admin routes disabled because no admin token is configured.
"""

from __future__ import annotations

import hmac

from fastapi import Request

from server.errors import APIError


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def _known(token: str, candidates: list[str]) -> bool:
    # Constant-time comparison, so response timing does not leak how much of a key was right.
    return any(hmac.compare_digest(token.encode(), c.encode()) for c in candidates)


def check_api_key(request: Request, api_keys: list[str], admin_token: str | None) -> str | None:
    """The caller's key (None when keys are off); raises 401 for a missing or unknown key."""
    if not api_keys:
        return None
    token = bearer_token(request)
    if token is None:
        raise APIError(401, "missing API key: send 'Authorization: Bearer <key>'", "authentication_error")
    if not _known(token, api_keys + ([admin_token] if admin_token else [])):
        raise APIError(401, "unknown API key; check the key you were given", "authentication_error")
    return token


def check_admin(request: Request, admin_token: str | None, api_keys: list[str]) -> None:
    if admin_token is None:
        raise APIError(
            403, "admin routes are disabled: set TTRV_ADMIN_TOKEN on the gateway", "permission_error"
        )
    token = bearer_token(request)
    if token is None:
        raise APIError(
            401, "missing admin token: send 'Authorization: Bearer <admin token>'", "authentication_error"
        )
    if _known(token, [admin_token]):
        return
    if _known(token, api_keys):
        raise APIError(403, "this route needs the admin token, not an API key", "permission_error")
    raise APIError(401, "unknown admin token", "authentication_error")
