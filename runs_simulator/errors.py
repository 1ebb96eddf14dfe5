"""OpenAI-shaped error bodies.

Why: the SDK maps status codes to exception classes (``NotFoundError``, ``RateLimitError``...)
and our code reads ``error.code``/``error.type``. Answering with the exact body shape
``{"error": {"message", "type", "param", "code"}}`` (schema ``ErrorResponse``) keeps the
client-side error handling honest.
"""

from __future__ import annotations

from starlette.responses import JSONResponse


class ApiError(Exception):
    """An error answer; raised inside handlers, rendered by the route wrapper."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type_: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, object]:
        """The JSON body, in the shape of the ``ErrorResponse`` schema."""
        return error_body(self.message, type_=self.type, param=self.param, code=self.code)

    def to_response(self) -> JSONResponse:
        """Render as a Starlette response."""
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def error_body(
    message: str, *, type_: str, param: str | None = None, code: str | None = None
) -> dict[str, object]:
    """Build ``{"error": {...}}`` with all four keys the schema requires."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def not_found(message: str, param: str | None = None) -> ApiError:
    """404 as OpenAI words it for an unknown object id."""
    return ApiError(404, message, param=param)


def bad_request(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    """400 ``invalid_request_error``."""
    return ApiError(400, message, param=param, code=code)


MISSING_KEY_MESSAGE = (
    "You didn't provide an API key. You need to provide your API key in an Authorization "
    "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
)

SERVER_ERROR_MESSAGE = (
    "The server had an error while processing your request. Sorry about that! (simulated fault)"
)


def missing_api_key() -> ApiError:
    """401 exactly as the API answers a request without an Authorization header."""
    return ApiError(401, MISSING_KEY_MESSAGE)


def rate_limited(retry_after_ms: int, model: str = "gpt-4o") -> ApiError:
    """429 with the ``rate_limit_exceeded`` code and the retry headers the SDK honours."""
    seconds = max(1, -(-retry_after_ms // 1000))
    message = (
        f"Rate limit reached for {model} in organization org-simulator on requests per min "
        f"(RPM): Limit 500, Used 500, Requested 1. Please try again in {retry_after_ms}ms. "
        "(simulated fault)"
    )
    headers = {
        "retry-after": str(seconds),
        "retry-after-ms": str(retry_after_ms),
        "x-ratelimit-limit-requests": "500",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": f"{retry_after_ms}ms",
    }
    return ApiError(429, message, type_="requests", code="rate_limit_exceeded", headers=headers)


def server_error() -> ApiError:
    """500 ``server_error`` body like the API's transient failures."""
    return ApiError(500, SERVER_ERROR_MESSAGE, type_="server_error")
