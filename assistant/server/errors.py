"""OpenAI's error body (`{"error": {"message", "type", "code", "param"}}`) with the status each failure deserves."""

from __future__ import annotations

from typing import Any

# status -> OpenAI error type
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    502: "server_error",
    503: "server_error",
    504: "server_error",
}

# agent Error.kind -> HTTP status
ERROR_KIND_STATUS = {"bad_input": 400, "model_backend": 502, "tool": 500, "internal": 500, "timeout": 504}


class ApiError(Exception):
    """Raised anywhere in a request; the app turns it into the OpenAI error body."""

    def __init__(self, status: int, message: str, code: str, *, param: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return error_body(self.status, self.message, self.code, param=self.param)


def error_body(status: int, message: str, code: str, *, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": ERROR_TYPES.get(status, "server_error"), "code": code,
                      "param": param}}


def error_response(error: ApiError) -> Any:
    from fastapi.responses import JSONResponse

    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)
