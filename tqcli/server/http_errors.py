"""The one place an error becomes an HTTP answer: `{"error": MESSAGE, "exit_code": N}`.

The status follows the CLI's exit code (SPEC: 2 → 400, 3 → 404, 4 → 403,
5 → 429, 6 → 409, 7 → 503, 8 and 70 → 500); a token that is missing,
unknown, expired or revoked is 401. Nothing else reaches a client: an
unexpected exception is logged with its traceback on the server's stderr
and answered 500 with exit code 70.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from tqcli.errors import InternalError, TqcliError
from tqcli.security.tokens import Unauthenticated

log = logging.getLogger("tqcli.server")

STATUS_OF_EXIT_CODE = {1: 409, 2: 400, 3: 404, 4: 403, 5: 429, 6: 409, 7: 503, 8: 500, 70: 500, 124: 504, 130: 503}
EXIT_CODE_OF_STATUS = {400: 2, 401: 4, 403: 4, 404: 3, 405: 2, 409: 6, 413: 2, 415: 2, 422: 2, 429: 5, 503: 7}
DESCRIPTIONS = {
    400: "Invalid input (exit code 2)",
    401: "No token, or an unknown, expired or revoked one",
    403: "The token's user lacks the role (exit code 4; audited as access.denied)",
    404: "Not found (exit code 3)",
    409: "Conflict with the object's state (exit code 6)",
    413: "The request body is over the size limit",
    415: "The body's Content-Type is not one this endpoint reads",
    422: "The body failed validation (exit code 2)",
    429: "A queue or tenant limit was reached (exit code 5)",
    503: "The database is busy or unreachable (exit code 7)",
}


class ErrorBody(BaseModel):
    """What every error answer holds."""

    error: str
    exit_code: int


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route decorator: the error statuses it may answer, documented in the OpenAPI document."""
    return {status: {"model": ErrorBody, "description": DESCRIPTIONS.get(status, "Error")} for status in statuses}


def error_answer(status: int, message: str, exit_code: int, headers: dict[str, str] | None = None) -> JSONResponse:
    """The JSON answer for an error."""
    return JSONResponse({"error": message, "exit_code": exit_code}, status_code=status, headers=headers)


def status_of(error: TqcliError) -> int:
    """The HTTP status of a library error."""
    if isinstance(error, Unauthenticated):
        return 401
    return STATUS_OF_EXIT_CODE.get(error.exit_code, 500)


def install(app: FastAPI) -> None:
    """Register the handlers that turn every exception into an `{"error", "exit_code"}` answer."""

    @app.exception_handler(TqcliError)
    async def library_error(request: Request, error: TqcliError) -> JSONResponse:
        status = status_of(error)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        if status >= 500 and error.exit_code in (8, 70):
            log.error("%s %s: %s", request.method, request.url.path, error.message)
        return error_answer(status, error.message, error.exit_code, headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        return error_answer(422, validation_message(error.errors()), 2)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        message = str(error.detail)
        if error.status_code == 404 and message == "Not Found":
            message = f"no endpoint {request.url.path}: see /openapi.json for the API"
        elif error.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}: see /openapi.json"
        return error_answer(error.status_code, message, EXIT_CODE_OF_STATUS.get(error.status_code, 70), getattr(error, "headers", None))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        # Starlette raises the exception again once this answer is sent, so uvicorn logs its traceback (server side only).
        bug = InternalError(f"internal error ({type(error).__name__}): a bug in tqcli; the server's log has the details")
        return error_answer(500, bug.message, bug.exit_code)


def validation_message(errors: Any) -> str:
    """One line naming each invalid field of a request and what is wrong with it."""
    parts = []
    for item in list(errors)[:5]:
        where = ".".join(str(part) for part in item.get("loc", ()) if part not in ("body",)) or "body"
        parts.append(f"{where}: {item.get('msg', 'invalid')}")
    more = len(list(errors)) - len(parts)
    return "invalid request: " + "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")
