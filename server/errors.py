"""One error envelope for every failure: `{"error": {"message", "type", "param", "code"}}`.

Every exception that reaches FastAPI is turned into that envelope by the handlers below; a message says
what is wrong and what to do, and no stack trace ever reaches a client (unexpected errors are logged with
their trace and answered with a generic 500).
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from core.engine import EngineRefusedError
from core.wire import ErrorDetail, ErrorEnvelope

log = logging.getLogger("ttrv.gateway")


class APIError(Exception):
    """An error with its HTTP status, as the client will see it."""

    def __init__(
        self,
        status: int,
        message: str,
        type: str = "invalid_request_error",
        param: str | None = None,
        retry_after_s: int | None = None,
        code: str | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.retry_after_s = retry_after_s
        self.code = code  # a machine-readable reason (OpenAI's, e.g. model_not_found); default: the status


def refused(err: EngineRefusedError) -> APIError:
    """The client's error for a request vLLM refused: vLLM's status where the contract has it (400, 413,
    422), else 400, with vLLM's reason. Never 503: nothing is wrong with the engine."""
    status = err.status if err.status in (400, 413, 422) else 400
    return APIError(status, f"the model cannot take this request: {err.message}", param=None)


def error_response(
    status: int,
    message: str,
    type: str,
    param: str | None = None,
    retry_after_s: int | None = None,
    code: str | None = None,
) -> JSONResponse:
    body = ErrorEnvelope(error=ErrorDetail(message=message, type=type, param=param, code=code or status))
    headers = {"Retry-After": str(retry_after_s)} if retry_after_s is not None else None
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, APIError)
    return error_response(exc.status, exc.message, exc.type, exc.param, exc.retry_after_s, exc.code)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
    loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")]
    param = ".".join(loc) or None
    where = f"field '{param}'" if param else "the request body"
    message = f"{where}: {first.get('msg', 'invalid')}. See /docs for the schema."
    return error_response(422, message, "invalid_request_error", param)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    messages = {
        404: f"no route {request.url.path}; see /docs for the routes",
        405: f"{request.method} is not allowed on {request.url.path}; see /docs",
    }
    message = messages.get(exc.status_code, str(exc.detail))
    return error_response(exc.status_code, message, "invalid_request_error")


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return error_response(500, "internal error; it was logged, and retrying may help", "server_error")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(APIError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
