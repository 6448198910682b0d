"""The exception tree of Tether.

Every error a client can see is one of these, raised where it is detected and
translated to OpenAI-shaped JSON (`{"error": {message, type, param, code}}`) by the
API layer, or to a `response.failed` event by the runner.

    TetherError
    ├── APIError                     -- answered to the client before any stream starts
    │   ├── InvalidRequestError      (400, invalid_request_error)
    │   ├── NotFoundError            (404, invalid_request_error)
    │   └── ConflictError            (409, invalid_request_error)
    ├── ConfigError                  -- settings or the models file are wrong; stops start-up
    ├── ProviderError                -- an upstream model failed; becomes response.failed
    └── StorageError                 -- a backend failed
        ├── StoreUnavailableError    -- the store could not be reached (refused, lost, starting
        │                               up): retrying may succeed; a write's outcome is unknown
        └── AppendConflictError      -- a compare-and-append lost (response already terminal,
                                        deleted, or another writer appended first)
"""

from __future__ import annotations


class TetherError(Exception):
    """Root of every error Tether raises on purpose."""


class APIError(TetherError):
    """An error answered to the client as JSON with an HTTP status."""

    status_code = 500
    error_type = "server_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code

    def to_dict(self) -> dict[str, object]:
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }


class InvalidRequestError(APIError):
    status_code = 400
    error_type = "invalid_request_error"


class NotFoundError(APIError):
    status_code = 404
    error_type = "invalid_request_error"


class PayloadTooLargeError(APIError):
    status_code = 413
    error_type = "invalid_request_error"


class ConflictError(APIError):
    status_code = 409
    error_type = "invalid_request_error"


class UpstreamError(APIError):
    """The model's upstream failed a request Tether answers synchronously (502)."""

    status_code = 502
    error_type = "server_error"


class ConfigError(TetherError):
    """Settings or the models file are wrong; the message says what to change."""


class ProviderError(TetherError):
    """An upstream model call failed.

    `code` is the Response error code to report (`server_error`,
    `rate_limit_exceeded`, …); `status` is the upstream HTTP status when there was one.
    """

    def __init__(
        self, message: str, *, code: str = "server_error", status: int | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status


class StorageError(TetherError):
    """A storage backend failed or was misconfigured."""


class StoreUnavailableError(StorageError):
    """The store could not be reached: the connection was refused or lost, or the server
    is starting up or shutting down. The same call may succeed once it is back; a write
    that raised this may or may not have been applied."""


class AppendConflictError(StorageError):
    """A compare-and-append did not apply: the response is terminal, gone, or moved on."""


class EventsExpiredError(StorageError):
    """The response's event log was dropped after its retention period; its final
    snapshot is still stored."""


def response_not_found(response_id: str) -> NotFoundError:
    return NotFoundError(f"Response with id '{response_id}' not found.")
