from __future__ import annotations

from conversations.llm.client import UpstreamError

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "insufficient_quota",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    502: "upstream_error",
    503: "service_unavailable",
    500: "server_error",
    504: "timeout",
}


class GatewayError(Exception):
    """A request the gateway refuses or cannot serve; carries OpenAI's error shape."""

    def __init__(self, status: int, message: str, *, code: str | None = None, param: str | None = None,
                 retry_after: int | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.retry_after = retry_after

    @property
    def type(self) -> str:
        return ERROR_TYPES.get(self.status, "api_error" if self.status >= 500 else "invalid_request_error")

    def as_dict(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    @classmethod
    def from_upstream(cls, exc: UpstreamError) -> GatewayError:
        """What members see of an upstream failure: Chatsite's message (never the upstream's own
        text, see UpstreamError), the upstream's error code and param, and its Retry-After."""
        codes = {429: "rate_limit_exceeded", 502: "bad_upstream", 503: "upstream_unavailable", 504: "upstream_timeout"}
        return cls(exc.status, exc.message, code=exc.code or codes.get(exc.status, "upstream_error"), param=exc.param,
                   retry_after=exc.retry_after)
