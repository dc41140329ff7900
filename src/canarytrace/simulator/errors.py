"""Provider errors: one simulated failure, rendered in OpenAI's or Anthropic's real shape.

The SDKs pick their exception class from the status code (and Anthropic's also from the
body), so each kind maps to the status the provider really uses:

    kind              OpenAI                    Anthropic
    invalid_request   400 invalid_request_error 400 invalid_request_error
    authentication    401 invalid_request_error 401 authentication_error
    not_found         404 (model_not_found)     404 not_found_error
    rate_limit        429 + retry-after         429 rate_limit_error + retry-after
    server_error      500 server_error          500 api_error
    overloaded        503 server_error          529 overloaded_error

OpenAI's error `code` is the kind's unless the error names its own: a missing model is
`model_not_found`; an unknown response id or URL is no missing model and gets no code.
"""

from __future__ import annotations

from typing import Any, Literal

ErrorKind = Literal[
    "invalid_request", "authentication", "not_found", "rate_limit", "server_error", "overloaded"
]
ERROR_KINDS: tuple[ErrorKind, ...] = (
    "invalid_request",
    "authentication",
    "not_found",
    "rate_limit",
    "server_error",
    "overloaded",
)

_OPENAI: dict[ErrorKind, tuple[int, str, str | None]] = {
    "invalid_request": (400, "invalid_request_error", None),
    "authentication": (401, "invalid_request_error", "invalid_api_key"),
    "not_found": (404, "invalid_request_error", None),
    "rate_limit": (429, "requests", "rate_limit_exceeded"),
    "server_error": (500, "server_error", None),
    "overloaded": (503, "server_error", None),
}
_ANTHROPIC: dict[ErrorKind, tuple[int, str]] = {
    "invalid_request": (400, "invalid_request_error"),
    "authentication": (401, "authentication_error"),
    "not_found": (404, "not_found_error"),
    "rate_limit": (429, "rate_limit_error"),
    "server_error": (500, "api_error"),
    "overloaded": (529, "overloaded_error"),
}
_DEFAULT_MESSAGES: dict[ErrorKind, str] = {
    "invalid_request": "The request is invalid.",
    "authentication": "No API key was provided. Pass any key to the simulator, e.g. 'test-key'.",
    "not_found": "The requested resource does not exist.",
    "rate_limit": "Rate limit reached for requests. Please try again later.",
    "server_error": "The server had an error while processing your request. Sorry about that!",
    "overloaded": "The service is temporarily overloaded. Please try again later.",
}


class SimulatedError(Exception):
    """A request the simulated provider refuses; raised by the API modules, rendered here."""

    def __init__(
        self,
        kind: ErrorKind,
        message: str = "",
        *,
        param: str | None = None,
        code: str | None = None,
        retry_after_s: float | None = None,
        delay_s: float = 0.0,
    ) -> None:
        self.kind: ErrorKind = kind
        self.text = message or _DEFAULT_MESSAGES[kind]
        self.param = param
        self.code = code  # OpenAI's error code, where it is not the kind's
        self.retry_after_s = retry_after_s
        self.delay_s = delay_s  # wall seconds the simulated provider takes to refuse
        super().__init__(f"{kind}: {self.text}")


def openai_error(error: SimulatedError, request_id: str) -> tuple[int, dict[str, str], Any]:
    """Status, headers and JSON body of `error` as the OpenAI API sends it."""
    status, type_, code = _OPENAI[error.kind]
    code = error.code or code
    body = {"error": {"message": error.text, "type": type_, "param": error.param, "code": code}}
    return status, {"x-request-id": request_id, **_retry_headers(error)}, body


def anthropic_error(error: SimulatedError, request_id: str) -> tuple[int, dict[str, str], Any]:
    """Status, headers and JSON body of `error` as the Anthropic API sends it."""
    status, type_ = _ANTHROPIC[error.kind]
    body = {
        "type": "error",
        "error": {"type": type_, "message": error.text},
        "request_id": request_id,
    }
    return status, {"request-id": request_id, **_retry_headers(error)}, body


def _retry_headers(error: SimulatedError) -> dict[str, str]:
    """`retry-after` (seconds, as both providers send it) plus the SDKs' `retry-after-ms`."""
    if error.retry_after_s is None:
        return {}
    seconds = max(error.retry_after_s, 0.0)
    return {"retry-after": f"{seconds:g}", "retry-after-ms": str(round(seconds * 1000))}
