"""Whether Kafka is reachable, as the long-lived Kafka clients of one process see it.

librdkafka reports every failed connection attempt (an `error_cb` event and a `FAIL` log line,
dozens a second per client while the cluster is down) and never reports a success as such. So
the tracker (the shared `connector.availability.Availability`) reads two signals:

- down: a client reported `_ALL_BROKERS_DOWN` and no client's statistics showed a broker
  connection up within the grace that follows (an idle client whose connections the brokers
  closed reports `_ALL_BROKERS_DOWN` while the busy clients are connected: their next
  statistics settle it);
- up: a client's statistics (`stats_cb`, every `statistics.interval.ms`) show a connection to a
  cluster broker (node id >= 0: the bootstrap placeholders do not count) in state UP.

Clients that are not watched report what their requests found with `answered()` and
`unanswered()` (the topic watch's admin calls: they reach Kafka before the roles' clients exist).

Until either happens Kafka is `starting`, and readiness says the process is still connecting.
The reason of an outage names the bootstrap servers, the last connection failure and the settings
to check. librdkafka's own FAIL lines go to DEBUG (`connector.logs`), so an outage is two lines:
one when it begins and one when it ends.

Only clients whose `poll()` is served continually may be watched: librdkafka queues the callbacks'
events until the next `poll()`, so an idle client would pile them up.

A broker that refuses the connection (credentials, certificates, the security protocol:
`connector.kafka.refusals`) is reported by the clients' `error_cb` and by the topic watch
(`refused()`). Until the process has once been connected, a refusal is most likely a
misconfiguration that no retry will mend: when refusals have lasted `refusal_timeout_seconds`
without any connection (and the latest failure is still one), `fatal_problem()` says so and the
runner stops the process (exit 1, one line naming the settings to check). Once a connection was
made, a refusal is an outage like any other (a broker restarted with new certificates, a
credential being rotated): readiness and one log line say it, with the settings to check, and
the process keeps trying.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

import orjson
from confluent_kafka import KafkaError

from connector.availability import Availability, State
from connector.clock import Clock, SystemClock
from connector.kafka.refusals import Refusal, refusal_of_error
from connector.metrics import Metrics

log = logging.getLogger(__name__)

DEFAULT_STATISTICS_INTERVAL_MS = 1000
GRACE_INTERVALS = 2
"""An `_ALL_BROKERS_DOWN` becomes an outage when this many statistics intervals passed without
any client seeing a broker connection up."""
CONNECTION_FAILURES = frozenset(
    {KafkaError._TRANSPORT, KafkaError._RESOLVE, KafkaError._AUTHENTICATION, KafkaError._SSL}
)
DEFAULT_REFUSAL_TIMEOUT_SECONDS = 30.0
SETTINGS_TO_CHECK = (
    "check KAFKA_BOOTSTRAP_SERVERS (and KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_*, KAFKA_SSL_* where "
    "the cluster needs them)"
)


class KafkaAvailability:
    def __init__(
        self,
        bootstrap_servers: str,
        metrics: Metrics | None = None,
        clock: Clock | None = None,
        *,
        refusal_timeout_seconds: float = DEFAULT_REFUSAL_TIMEOUT_SECONDS,
    ) -> None:
        self._bootstrap_servers = bootstrap_servers
        self._clock: Clock = clock or SystemClock()
        self._availability = Availability(
            "kafka",
            gauge=None if metrics is None else metrics.kafka_up,
            clock=self._clock,
            initial=State.STARTING,
        )
        self._lock = threading.Lock()
        self._last_failure = ""
        self._all_down_since: float | None = None
        self._grace_seconds = GRACE_INTERVALS * DEFAULT_STATISTICS_INTERVAL_MS / 1000
        self._refusal_timeout = refusal_timeout_seconds
        self._ever_connected = False
        self._refused: Refusal | None = None
        """The latest connection failure, when it was a refusal."""
        self._refused_since: float | None = None
        """When the first refusal came, while none was ever connected."""

    @property
    def state(self) -> State:
        self._settle()
        return self._availability.state

    def watch(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """`config` plus the callbacks that report to this tracker; a `stats_cb` already in it is
        still called. Statistics are required: an interval of 0 (off) takes the default."""
        interval_ms = int(config.get("statistics.interval.ms", 0)) or DEFAULT_STATISTICS_INTERVAL_MS
        with self._lock:
            self._grace_seconds = max(self._grace_seconds, GRACE_INTERVALS * interval_ms / 1000)
        also: Callable[[str], None] | None = config.get("stats_cb")

        def on_statistics(stats_json: str) -> None:
            self.on_statistics(stats_json)
            if also is not None:
                also(stats_json)

        return {
            **config,
            "statistics.interval.ms": interval_ms,
            "stats_cb": on_statistics,
            "error_cb": self.on_error,
        }

    def on_error(self, error: KafkaError) -> None:
        """A client's `error_cb`."""
        code = error.code()
        if code in CONNECTION_FAILURES:
            self._last_failure = error.str()
            self._failed(refusal_of_error(error))
        elif code == KafkaError._ALL_BROKERS_DOWN:
            self.unanswered()
        self._settle()

    def answered(self) -> None:
        """A request of a client that is not watched (an admin call) got its answer."""
        with self._lock:
            self._all_down_since = None
            self._ever_connected = True
            self._refused = self._refused_since = None
            self._availability.reached()

    def refused(self, refused: Refusal) -> None:
        """A request of a client that is not watched found the brokers refusing it."""
        self._failed(refused)
        self.unanswered()

    def _failed(self, refused: Refusal | None) -> None:
        with self._lock:
            self._refused = refused
            if refused is not None and self._refused_since is None and not self._ever_connected:
                self._refused_since = self._clock.monotonic()

    def fatal_problem(self) -> str | None:
        """Why the process should stop: the brokers have refused every connection for
        `refusal_timeout_seconds` since start-up, and still do; None otherwise."""
        with self._lock:
            refused, since = self._refused, self._refused_since
            if self._ever_connected or refused is None or since is None:
                return None
            lasting = self._clock.monotonic() - since
        if lasting < self._refusal_timeout or not refused.confirmed():
            return None
        return refused.describe(self._bootstrap_servers, lasting)

    def unanswered(self, failure: str | None = None) -> None:
        """No broker could be reached (all of a client's connections are down, or a request
        timed out without an answer): an outage unless a client connects within the grace."""
        with self._lock:
            if failure and not self._last_failure:  # a client's own connection error says more
                self._last_failure = failure
            if self._all_down_since is None:
                self._all_down_since = self._clock.monotonic()
        self._settle()

    def on_statistics(self, stats_json: str) -> None:
        """A client's `stats_cb`."""
        try:
            brokers = orjson.loads(stats_json).get("brokers")
        except (orjson.JSONDecodeError, AttributeError):
            log.debug("unreadable librdkafka statistics ignored")
            return
        connected = isinstance(brokers, dict) and any(
            isinstance(broker, dict)
            and broker.get("nodeid", -1) >= 0
            and broker.get("state") == "UP"
            for broker in brokers.values()
        )
        if connected:
            self.answered()
        else:
            self._settle()

    def problem(self) -> str | None:
        """Why Kafka cannot be used now (for readiness), or None while it is up."""
        state = self.state
        if state is State.UP:
            return None
        refused = self._refused if self._refused is not None and self._refused.known() else None
        if state is State.STARTING:
            if refused is not None:
                return f"connecting: {refused.describe(self._bootstrap_servers)}"
            failure = f" (last failure: {self._last_failure})" if self._last_failure else ""
            return f"connecting to Kafka at {self._bootstrap_servers}{failure}"
        down_for = self._availability.seconds_in_state()
        reason = (
            refused.describe(self._bootstrap_servers)
            if refused is not None
            else self._availability.reason
        )
        return f"Kafka unreachable for {down_for:.0f}s: {reason}"

    def _settle(self) -> None:
        with self._lock:
            since = self._all_down_since
            if since is None or self._clock.monotonic() - since < self._grace_seconds:
                return
            if self._refused is not None and self._refused.known():
                self._availability.lost(self._refused.describe(self._bootstrap_servers))
                return
            failure = f" ({self._last_failure})" if self._last_failure else ""
            self._availability.lost(
                f"no broker reachable at {self._bootstrap_servers}{failure}; {SETTINGS_TO_CHECK}"
            )
