"""Every `toloka-connector` command: the module that adds it and its one-line summary.

Kept apart from the command modules, and importing nothing, so that the command line can list
every command in `--help` while importing only the module of the command it runs
(`connector.cli`): the roles, httpx, confluent-kafka, the simulator and the development brokers
take most of a second of CPU to import, which a one-shot command (`healthcheck`, run by a
container's health check every few seconds, `status`, `tail`) need not pay.
"""

from __future__ import annotations

from typing import NamedTuple


class Command(NamedTuple):
    module: str
    """The module under `connector.commands` whose `register(subparsers)` adds the command."""
    summary: str
    """Its line in the top-level `--help` (and the start of its own `--help`)."""


COMMANDS: dict[str, Command] = {
    "run": Command("roles", "uploader and poller in one process (the normal deployment)"),
    "upload": Command("roles", "the uploader only: input topic → Toloka (scale it out)"),
    "poll": Command("roles", "the poller only: finished items → output topic, exactly once"),
    "check": Command(
        "check", "validate settings, reach Kafka and the API, check the topics and the app project"
    ),
    "simulator": Command("simulator", "serve the local Toloka Apps API simulator"),
    "embedded-kafka": Command(
        "embedded_kafka",
        "start a local Kafka-protocol broker for development; prints its bootstrap address",
    ),
    "demo": Command("demo", "the whole pipeline end to end on embedded defaults"),
    "healthcheck": Command(
        "healthcheck", "probe a running connector's /healthz (or /readyz); exit 0 when healthy"
    ),
    "tail": Command("tail", "print a topic's records as JSON lines (read_committed)"),
    "status": Command(
        "operations", "the cursor, the leading poller, the uploader's lag and the dead letters"
    ),
    "reset-cursor": Command(
        "operations", "move the poller's cursor: publish again, or skip, finished items"
    ),
    "replay-dlq": Command(
        "operations", "put dead letters back on the input topic after their cause is fixed"
    ),
    "produce-samples": Command(
        "produce_samples",
        "produce sample items to the input topic (to try the connector without a producer)",
    ),
}
"""In the order of the top-level `--help`; a module adding several commands adds them in this
order too."""


def summary(command: str) -> str:
    return COMMANDS[command].summary
