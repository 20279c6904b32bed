"""What `check` verifies: Kafka reachable, the topics there (the state topic compacted), the app
project and its app reachable with the key. One line per check, `ok` or `FAIL` with the reason,
or `WARN` for what works today but fails on some records (a warning does not fail the check)."""

from __future__ import annotations

from collections.abc import Callable

from connector.app.topics import (
    MAX_MESSAGE_BYTES,
    connector_topics,
    dead_letter_limit,
    leadership_topic_spec,
    sized_dead_letter_topic,
)
from connector.config import CursorWriteSettings, Settings
from connector.errors import ConnectorError, KafkaOperationError
from connector.kafka.admin import (
    TopicSpec,
    broker_config_value,
    cleanup_policies,
    ensure_topics,
    existing_topics,
    topic_config_values,
)
from connector.kafka.topic_watch import TopicNeed, not_compacted
from connector.toloka.client import TolokaClient
from connector.toloka.models import App

KAFKA_TIMEOUT_SECONDS = 10.0


class Report:
    def __init__(self) -> None:
        self.failures = 0
        self.warnings = 0
        self.done = 0

    def line(self, ok: bool, what: str, detail: str = "") -> None:
        self.failures += 0 if ok else 1
        self._print("ok  " if ok else "FAIL", what, detail)

    def warn(self, what: str, detail: str) -> None:
        self.warnings += 1
        self._print("WARN", what, detail)

    def _print(self, verdict: str, what: str, detail: str) -> None:
        self.done += 1
        print(f"{verdict}  {what}{': ' + detail if detail else ''}", flush=True)

    def attempt(self, what: str, probe: Callable[[], str]) -> bool:
        try:
            detail = probe()
        except ConnectorError as exc:
            self.line(False, what, str(exc))
            return False
        self.line(True, what, detail)
        return True


def check_kafka(settings: Settings, report: Report, create_topics: bool) -> None:
    config = settings.kafka.client_config()
    topics: set[str] = set()

    def reach() -> str:
        topics.update(existing_topics(config, KAFKA_TIMEOUT_SECONDS))
        return settings.kafka.bootstrap_servers

    if not report.attempt("Kafka reachable", reach):
        return
    checked: set[str] = set()  # the state topic is every pipeline's
    for pipeline in settings.pipelines:
        check_topics(pipeline, report, create_topics, topics, checked)
    transaction_timeout_line(settings, report)


def check_topics(
    settings: Settings, report: Report, create_topics: bool, topics: set[str], checked: set[str]
) -> None:
    """The topics of one pipeline that are not `checked` yet; `topics` are those there."""
    config = settings.kafka.client_config()
    specs = [spec for spec in connector_topics(settings) if spec.name not in checked]
    checked.update(spec.name for spec in specs)
    input_topic, dlq_topic = settings.uploader.input_topic, settings.uploader.dlq_topic
    if create_topics:
        # The input topic first: the dead-letter topic's limit follows from the input's.
        missing = [spec for spec in specs if spec.name not in topics]
        others = [spec for spec in missing if spec.name != dlq_topic]
        create_missing(config, others, report, topics)
        dead_letters = [spec for spec in missing if spec.name == dlq_topic]
        limit = input_limit(config, input_topic) if dead_letters else None
        if limit is not None:
            dead_letters = [sized_dead_letter_topic(spec, limit) for spec in dead_letters]
        create_missing(config, dead_letters, report, topics)
    leadership = leadership_topic_spec(settings).name
    for spec in specs:
        if spec.name == leadership and spec.name not in topics:
            report.warn(
                f"topic {spec.name}",
                "missing: the poller creates it if this account may create topics; otherwise "
                "create it (one partition), or run check --create-topics",
            )
        elif spec.name not in topics:
            report.line(
                False, f"topic {spec.name}", "missing (create it, or run check --create-topics)"
            )
        elif spec.compacted:
            compaction_line(config, spec, report)
        else:
            report.line(True, f"topic {spec.name}")
    if {input_topic, dlq_topic} <= topics:
        dead_letter_room_line(config, input_topic, dlq_topic, report)


def dead_letter_room_line(
    config: dict[str, str], input_topic: str, dlq_topic: str, report: Report
) -> None:
    """A dead-letter topic whose limit is below the input's plus the headers a dead letter adds
    works until a record near the input limit is refused: it cannot be dead-lettered, so the
    uploader stops on it (and restarts into it). A warning, not a failure: most topics are made
    with the broker's default limit, and their records are far below it."""
    limits = topic_config_values(
        config, [input_topic, dlq_topic], MAX_MESSAGE_BYTES, KAFKA_TIMEOUT_SECONDS
    )
    if input_topic not in limits or dlq_topic not in limits:
        return  # a broker that does not say is not held against it
    needed = dead_letter_limit(int(limits[input_topic]))
    if int(limits[dlq_topic]) < needed:
        report.warn(
            f"topic {dlq_topic}",
            f"max.message.bytes={limits[dlq_topic]} leaves no room for the headers of a dead "
            f"letter of the largest input record ({input_topic} takes up to "
            f"{limits[input_topic]} bytes): such a record would stop the uploader; raise it to "
            f"{needed}",
        )


def create_missing(
    config: dict[str, str], specs: list[TopicSpec], report: Report, topics: set[str]
) -> None:
    """Create `specs` (one report line), adding them to `topics` when that worked."""
    if specs and report.attempt(
        "topics created",
        lambda: ", ".join(ensure_topics(config, specs, KAFKA_TIMEOUT_SECONDS).created),
    ):
        topics.update(spec.name for spec in specs)


def input_limit(config: dict[str, str], topic: str) -> int | None:
    """The input topic's `max.message.bytes`, None where the broker does not say."""
    value = topic_config_values(config, [topic], MAX_MESSAGE_BYTES, KAFKA_TIMEOUT_SECONDS)
    return int(value[topic]) if topic in value else None


def transaction_timeout_line(settings: Settings, report: Report) -> None:
    """The poller's transaction timeout must be within the broker's transaction.max.timeout.ms,
    or every transaction of the poller is refused (a broker that does not say is not held
    against it)."""
    timeout = settings.get(CursorWriteSettings).transaction_timeout_seconds
    variable = CursorWriteSettings.variable("transaction_timeout_seconds")
    most = broker_config_value(
        settings.kafka.client_config(), "transaction.max.timeout.ms", KAFKA_TIMEOUT_SECONDS
    )
    if most is None:
        report.line(True, variable, f"{timeout:g}s (the broker's maximum not verified)")
    elif timeout * 1000 > int(most):
        report.line(
            False,
            variable,
            f"{timeout:g}s is above the broker's transaction.max.timeout.ms ({most}): lower "
            "it (and CONNECTOR_LEADER_TIMEOUT_SECONDS with it) or raise the broker's maximum",
        )
    else:
        report.line(True, variable, f"{timeout:g}s (broker maximum {int(most) / 1000:g}s)")


def compaction_line(config: dict[str, str], spec: TopicSpec, report: Report) -> None:
    """The state topic must be compacted; a broker that does not say is not held against it."""
    try:
        policy = cleanup_policies(config, [spec.name], KAFKA_TIMEOUT_SECONDS)[spec.name]
    except KafkaOperationError as exc:
        report.line(True, f"topic {spec.name}", f"compaction not verified ({exc})")
        return
    if "compact" in policy.split(","):
        report.line(True, f"topic {spec.name}", f"cleanup.policy={policy}")
    else:
        need = TopicNeed(spec.name, "CONNECTOR_STATE_TOPIC", compacted=True)
        report.line(False, f"topic {spec.name}", not_compacted(need, policy))


def check_api(client: TolokaClient, report: Report) -> App | None:
    """The project and its app reachable; the app (its specs) when they are."""
    project_app: list[str] = []

    def project() -> str:
        found = client.get_project()
        project_app.append(found.app_id)
        return f"{found.id} ({found.name or 'unnamed'}, status {found.status})"

    if not report.attempt("app project reachable", project):
        return None
    apps: list[App] = []

    def app() -> str:
        found = client.get_app(project_app[0])
        apps.append(found)
        fields = ", ".join(
            f"{name}: {spec.type}{'' if spec.required else '?'}"
            for name, spec in found.input_spec.items()
        )
        return f"{found.id} input_spec {{{fields}}}"

    report.attempt("app and input_spec", app)
    return apps[0] if apps else None
