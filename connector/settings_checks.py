"""Settings checked together, where a command loaded both: the shutdown, liveness and drain
timeouts, the leader and transaction timeouts, the poller's transactional producer (librdkafka
holds other Kafka settings to its transaction timeout), and a value format that needs the Schema
Registry."""

from __future__ import annotations

from collections.abc import Iterable

from connector import stop_budget
from connector.contract.leadership import transactional_id
from connector.kafka_properties import (
    kafka_variable,
    new_producer_error,
    transactional_producer_settings,
)
from connector.settings_groups import (
    CursorSettings,
    CursorWriteSettings,
    KafkaSettings,
    RuntimeSettings,
    SchemaRegistrySettings,
    SettingsGroup,
    UploaderSettings,
    WorkerSettings,
)

_PROPERTY_ALIASES = {"delivery.timeout.ms": "message.timeout.ms"}


def poller_producer_problems(kafka: KafkaSettings, poller: CursorWriteSettings) -> list[str]:
    """The poller's producer (and reset-cursor's, which writes the cursor the same way) adds
    `transactional.id` and `transaction.timeout.ms` (CONNECTOR_TRANSACTION_TIMEOUT_SECONDS) to
    the Kafka settings, and librdkafka holds other settings to them (`socket.timeout.ms` and
    `message.timeout.ms` at most the transaction timeout). One line naming the settings that
    clash, or none."""
    config = transactional_producer_settings(
        kafka.client_config(), transactional_id("check"), poller.transaction_timeout_seconds
    )
    error = new_producer_error(config)
    if error is None:
        return []
    # librdkafka quotes the properties it complains about: `socket.timeout.ms`, `a=true`.
    named = {quoted.split("=")[0] for quoted in error.split("`")[1::2]}
    variables = [
        kafka_variable(prop)
        for prop in sorted(kafka.properties)
        if prop in named or _PROPERTY_ALIASES.get(prop) in named
    ]
    if "transaction.timeout.ms" in named:
        variables.insert(0, CursorWriteSettings.variable("transaction_timeout_seconds"))
    names = ", ".join(variables) or "KAFKA_* settings"
    return [f"{names}: the poller's transactional producer cannot start with these: {error}"]


def registry_problems(loaded: Iterable[SettingsGroup]) -> list[str]:
    """A value format other than json needs the registry: one line per format setting that asks
    for it while SCHEMA_REGISTRY_URL is empty."""
    groups = list(loaded)
    registry = next((g for g in groups if isinstance(g, SchemaRegistrySettings)), None)
    if registry is None or registry.url:
        return []
    formats = [
        (type(group).variable(name), getattr(group, name))
        for group in groups
        for name in ("input_format", "output_format")
        if name in type(group).model_fields
    ]
    url = SchemaRegistrySettings.variable("url")
    return [
        f"{url}: is required by {variable}={value}"
        for variable, value in formats
        if value != "json"
    ]


def related_setting_problems(groups: Iterable[SettingsGroup]) -> list[str]:
    """Settings that only make sense together, where a command uses both (one line per clash,
    naming both):

    - the shutdown timeout includes the uploader's drain (above it, or the process exits 1 in
      the middle of the drain, without committing the offsets of what it finished), and the
      steps of its stop after the drain (`stop_budget`: above them, in each worker process's
      budget too, or a coordinator that does not answer makes the stop overrun it);
    - liveness must outlast a drain, which a rebalance may take (or the pod is killed for it);
    - a leader's keepalive is its cursor record, written every quarter of the leader timeout
      in a transaction: a commit may take up to the transaction timeout, and a transaction
      another poller holds open on the shared state partition hides later records from the
      standby for up to the same. At most half the leader timeout keeps a live leader's
      keepalives visible within the leader timeout, so a slow commit never hands leadership
      over (and back: the two fence each other in turn)."""
    found = {type(group): group for group in groups}
    uploader = next((g for g in found.values() if isinstance(g, UploaderSettings)), None)
    runtime = next((g for g in found.values() if isinstance(g, RuntimeSettings)), None)
    cursor = next((g for g in found.values() if isinstance(g, CursorWriteSettings)), None)
    workers = next((g for g in found.values() if isinstance(g, WorkerSettings)), None)
    problems: list[str] = []
    if uploader is not None and runtime is not None:
        problems += _stop_budget_problems(runtime, workers)
        drain = UploaderSettings.variable("drain_timeout_seconds")
        for name in ("shutdown_timeout_seconds", "liveness_timeout_seconds"):
            value = getattr(runtime, name)
            if value <= uploader.drain_timeout_seconds:
                problems.append(
                    f"{RuntimeSettings.variable(name)}: {value:g} must be above {drain} "
                    f"({uploader.drain_timeout_seconds:g})"
                )
    if cursor is not None and cursor.transaction_timeout_seconds > (
        cursor.leader_timeout_seconds / 2
    ):
        problems.append(
            f"{CursorWriteSettings.variable('transaction_timeout_seconds')}: "
            f"{cursor.transaction_timeout_seconds:g} must be at most half of "
            f"{CursorSettings.variable('leader_timeout_seconds')} "
            f"({cursor.leader_timeout_seconds:g}): a commit that slow makes a live leader look "
            "dead to the standby"
        )
    return problems


def _stop_budget_problems(runtime: RuntimeSettings, workers: WorkerSettings | None) -> list[str]:
    """The uploader's stop after its drain must fit the shutdown budget of every process."""
    shutdown = RuntimeSettings.variable("shutdown_timeout_seconds")
    budget = runtime.shutdown_timeout_seconds
    need = stop_budget.AFTER_DRAIN_SECONDS
    steps = (
        f"the uploader's stop after its drain takes up to {need:g}s when Kafka does not answer: "
        f"dead letters {stop_budget.MIN_FLUSH_SECONDS:g}s, final commit "
        f"{stop_budget.MIN_COMMIT_SECONDS:g}s, leaving the group "
        f"{stop_budget.LEAVE_GROUP_SECONDS:g}s, closing {stop_budget.CLOSE_SECONDS:g}s"
    )
    if budget <= need:
        return [f"{shutdown}: {budget:g} must be above {need:g} ({steps})"]
    if workers is not None and workers.workers > 1:
        worker_budget = stop_budget.worker_shutdown_seconds(budget)
        if worker_budget <= need:
            count = WorkerSettings.variable("workers")
            return [
                f"{shutdown}: {budget:g} leaves each worker process ({count}={workers.workers}) "
                f"{worker_budget:g}s, which must be above {need:g} ({steps})"
            ]
    return []
