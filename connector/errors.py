"""The connector's one error tree.

    ConnectorError
    ├── ConfigError                  a setting is missing or wrong (exit code 2)
    ├── TolokaApiError               anything the Toloka Apps API client raises
    │   ├── RetryableApiError        worth another try: the request may succeed later
    │   │   ├── RateLimitedError         429 TOO_MANY_REQUESTS (honours Retry-After)
    │   │   ├── ServerError              408, 500, 502, 503, 504 (body may be HTML)
    │   │   └── TransportError           connect/read/write failures and timeouts
    │   └── FatalApiError            retrying the same request cannot help
    │       ├── AuthenticationError      401 / 403: bad or missing key, no access
    │       ├── NotFoundError            404 DOES_NOT_EXIST
    │       ├── ValidationFailedError    400 VALIDATION_ERROR (payload names bad fields)
    │       ├── PayloadTooLargeError     413: more items than one request may carry
    │       ├── UnexpectedResponseError  a 2xx whose body is not what the API documents
    │       │   ├── ResponseTooLargeError    a body over CONNECTOR_API_MAX_RESPONSE_BYTES
    │       │   └── UnreadablePageError      a listing page too large or undecodable
    │       ├── RedirectError            3xx: never followed (the API key would go along)
    │       └── ClientRequestError       any other 4xx
    ├── KafkaOperationError          a Kafka operation failed in a way the caller must see
    │   ├── KafkaRefusedError            the brokers refuse this client (credentials, TLS)
    │   ├── DeadLetterStuckError         a dead letter not acknowledged within its deadline
    │   ├── MigrationError               the one group cannot start where the old groups were
    │   ├── KafkaUnansweredError         a synchronous commit or close got no answer in time
    │   ├── StateTooLargeError           a poller state record larger than its producer may send
    │   └── PublishError                 a poller transaction did not commit
    │       ├── PageAbortedError             aborted; the same page may be tried again
    │       │   └── RecordsTooLargeError         records refused as too large for their topic
    │       ├── ProducerFencedError          a newer holder of the transactional id exists
    │       ├── ProducerFailedError          the producer cannot go on: replace it
    │       └── TransactionTimeoutRefusedError  the broker refuses the transaction timeout
    ├── SchemaRegistryError          the Schema Registry refused or failed a request
    │   └── RegistryUnavailableError     unreachable, 5xx, 408, 429, or refusing the credentials
    │       └── RegistryCredentialsError     refusing the credentials (401, 403)
    ├── StateFormatError             a state-topic record this connector cannot read
    ├── ItemFormatError              an API item without the shape the connector relies on
    │                                (the client raises it as an UnexpectedResponseError)
    ├── StartupError                 a role cannot start: the message names the setting to check
    ├── RoleFailedError              a role ended with a fatal error (the runner's summary)
    ├── PipelineFailedError          a pipeline's lane of the shared upload loop failed
    └── DevToolError                 the development tooling (not the connector itself) failed
        ├── BrokerError                  a development broker could not start or be controlled
        │   └── BrokerCapabilityError        the broker cannot do what was asked
        └── SimulatorStartError          the simulator process did not start

The command line turns the tree into exit codes in one place (`connector.cli`): ConfigError is
2, every other ConnectorError 1. An exception outside the tree is a bug: its traceback is shown.

`RetryableApiError.retry_after` carries the server's `Retry-After` in seconds when it sent one.
`TolokaApiError.may_have_been_applied` is true for a POST whose outcome is unknown (a timeout
after the request was sent, a 5xx from a gateway): a retry of it can create duplicates, so the
caller counts them. Messages never contain credentials.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol


class ConnectorError(Exception):
    """Base of every error the connector raises on purpose."""


class ItemFormatError(ConnectorError, ValueError):
    """An item (or listing page) the API sent lacks the shape the connector relies on; the
    message names the field and the item's place in the page, never a value (item data)."""


class ConfigError(ConnectorError):
    """One or more settings are invalid; each problem is one line naming the setting."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class KafkaOperationError(ConnectorError):
    """A Kafka operation failed and the caller has to know (topic missing, fatal producer)."""


class _Refusal(Protocol):
    """`connector.kafka.refusals.Refusal`, as far as the error needs it."""

    def describe(self, bootstrap_servers: str) -> str: ...


class KafkaRefusedError(KafkaOperationError):
    """The brokers refuse this client (`refusal` shows how); the message names the settings to
    check."""

    def __init__(self, refusal: _Refusal, bootstrap_servers: str) -> None:
        self.refusal: Any = refusal  # a Refusal: its module (a seam) sits above this one
        super().__init__(refusal.describe(bootstrap_servers))


class DeadLetterStuckError(KafkaOperationError):
    """A dead letter was not acknowledged within CONNECTOR_DLQ_TIMEOUT_SECONDS."""


class MigrationError(KafkaOperationError):
    """The one group cannot be started on a routed topic where the per-project groups of earlier
    versions were: their offsets (or its own) are unreadable, or its start was not committed."""


class KafkaUnansweredError(KafkaOperationError):
    """The broker did not answer a consumer's synchronous commit or close in the time given;
    the call goes on in the background (`connector.kafka.bounded`)."""


class StateTooLargeError(KafkaOperationError):
    """A poller state record (the cursor) is larger than its producer may send: no transaction
    can commit a page's move; the message names the settings that make room."""


class PublishError(KafkaOperationError):
    """Base of what a poller transaction (`commit_page`) raises; the page was not committed."""


class PageAbortedError(PublishError):
    """An abortable error: the transaction was aborted; the same page may be tried again."""


class RecordsTooLargeError(PageAbortedError):
    """Records of the page were refused as too large; the transaction was aborted. `refused`
    holds a `connector.kafka.transactions.SizeRefusal` per record."""

    def __init__(self, message: str, refused: Sequence[Any]) -> None:
        super().__init__(message)
        self.refused = tuple(refused)


class ProducerFencedError(PublishError):
    """A newer holder of the transactional id exists: step down to standby."""


class ProducerFailedError(PublishError):
    """The producer cannot go on (a fatal error, or a transaction whose end it could not reach:
    a commit or abort that kept timing out). It must be replaced, and the state read again: a
    commit whose outcome was unknown is known then."""


class TransactionTimeoutRefusedError(PublishError):
    """The broker refuses the transaction timeout (INVALID_TRANSACTION_TIMEOUT): the setting is
    above the broker's `transaction.max.timeout.ms`. A configuration problem, not an outage."""


class SchemaRegistryError(ConnectorError):
    """The Schema Registry refused a request (an incompatible schema, an unknown subject); the
    message names the URL's setting or the subject, never the credentials."""


class RegistryUnavailableError(SchemaRegistryError):
    """The registry did not answer (or refused the credentials): no record is judged by it."""


class RegistryCredentialsError(RegistryUnavailableError):
    """The registry refused the credentials (401, 403): no record is judged by it, and waiting
    will not bring it back (fatal at start-up)."""


class StateFormatError(ConnectorError):
    """A state-topic record this connector cannot read (corrupt, or written by a newer version)."""


class StartupError(ConnectorError):
    """A role cannot start: the message says which setting to check."""


class PipelineFailedError(ConnectorError):
    """An error in one pipeline's lane of the process's shared upload loop; the message names
    the pipeline's app project and input topic, `__cause__` is the error."""


class RoleFailedError(ConnectorError):
    """A role ended with a fatal error; its message says which and why."""


class DevToolError(ConnectorError):
    """The development tooling (brokers, simulator) failed; the connector's roles never raise it."""


class BrokerError(DevToolError):
    """A development broker could not be prepared, started or controlled."""


class BrokerCapabilityError(BrokerError):
    """The broker cannot do what was asked; the message names the capability and the reason
    (docs/brokers.md)."""

    def __init__(self, kind: str, capability: str, reason: str) -> None:
        self.kind = kind
        self.capability = capability
        self.reason = reason
        super().__init__(f"{kind} broker lacks {capability}: {reason}")


class SimulatorStartError(DevToolError):
    """The simulator process exited or printed no URL in time."""


class TolokaApiError(ConnectorError):
    """An Apps API call failed. `status` is None when no HTTP response arrived."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
        payload: dict[str, Any] | None = None,
        operation: str = "",
        may_have_been_applied: bool = False,
    ) -> None:
        self.message = message
        self.status = status
        self.code = code
        self.request_id = request_id
        self.payload = payload or {}
        self.operation = operation
        self.may_have_been_applied = may_have_been_applied
        super().__init__(self._describe())

    def _describe(self) -> str:
        parts = [self.operation] if self.operation else []
        if self.status is not None:
            parts.append(f"HTTP {self.status}")
        if self.code:
            parts.append(self.code)
        parts.append(self.message)
        if self.request_id:
            parts.append(f"(request_id {self.request_id})")
        return ": ".join(parts[:-1]) + (": " if len(parts) > 1 else "") + parts[-1]


class RetryableApiError(TolokaApiError):
    """The same request may succeed later."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kwargs)


class RateLimitedError(RetryableApiError):
    """429: slow down, for `retry_after` seconds when the server said so."""


class ServerError(RetryableApiError):
    """408 or 5xx from the API or a gateway in front of it."""


class TransportError(RetryableApiError):
    """No usable HTTP response: connection refused or reset, timeout, protocol error."""


class FatalApiError(TolokaApiError):
    """Retrying the same request cannot succeed."""


class AuthenticationError(FatalApiError):
    """401/403: the key is missing, wrong, or has no access to the project."""


class NotFoundError(FatalApiError):
    """404 DOES_NOT_EXIST: wrong project, app or item id, or wrong base URL."""


class ValidationFailedError(FatalApiError):
    """400 VALIDATION_ERROR. `payload` maps `input_data.<index>.<field>` to the field error."""


class PayloadTooLargeError(FatalApiError):
    """413: the request carried more items (or bytes) than the API accepts."""


class UnexpectedResponseError(FatalApiError):
    """A success status with a body that does not match the documented shape."""


class ResponseTooLargeError(UnexpectedResponseError):
    """The body is larger than `CONNECTOR_API_MAX_RESPONSE_BYTES`; `head` holds its first bytes
    (at most `HEAD_BYTES`), read before the client stopped."""

    HEAD_BYTES = 1024 * 1024

    def __init__(self, message: str, *, head: bytes = b"", **kwargs: Any) -> None:
        self.head = head
        super().__init__(message, **kwargs)


class UnreadablePageError(UnexpectedResponseError):
    """A 2xx answer to a listing that is no page: over the response-size limit, not JSON, or not
    the documented shape. `body` is what was read of it; `complete` is False when it was cut
    (a page over the limit). A smaller page may be readable: the poller shrinks its pages."""

    def __init__(self, message: str, *, body: bytes, complete: bool, **kwargs: Any) -> None:
        self.body = body
        self.complete = complete
        super().__init__(message, **kwargs)


class RedirectError(FatalApiError):
    """A 3xx. The API documents none, so something else answered (a proxy, a load balancer, a
    wrong TOLOKA_BASE_URL); it is never followed, since the API key would go along."""


class ClientRequestError(FatalApiError):
    """Any other 4xx (409 CONFLICT_STATE, 415, …)."""
