"""A role with what it needs from Kafka checked apart from it: a broker connection and its topics.

`/readyz` asks each role whether it is doing its job. What every role needs of Kafka is the same
question asked of shared trackers (`KafkaAvailability`, `TopicWatch`), so it is answered here,
before the role's own detail (API, leadership, progress): a role is ready only when Kafka is
reachable, each topic it uses exists (the state topic compacted), and it says so itself.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from connector.kafka.availability import KafkaAvailability
from connector.kafka.topic_watch import TopicWatch
from connector.lifecycle import Heartbeat, Readiness, Role


class CheckedRole:
    """`role`, ready only when Kafka is reachable and `topics` are as they must be.

    It is the `kind` of role (uploader, poller) of the pipeline of `app_project`: its gauges
    carry both (`connector.health.role_labels`); its name, which `/readyz` and `/healthz` say,
    names the project too when the process serves several (`named_by_project`)."""

    def __init__(
        self,
        role: Role,
        kafka: KafkaAvailability,
        watch: TopicWatch,
        topics: Sequence[str],
        *,
        app_project: str = "",
        named_by_project: bool = False,
    ) -> None:
        self.role = role
        self.kind = role.name
        self.app_project = app_project
        self.name = f"{role.name} of {app_project}" if named_by_project else role.name
        self.heartbeat: Heartbeat = role.heartbeat
        self._kafka = kafka
        self._watch = watch
        self._topics = tuple(topics)

    def run(self, stop: threading.Event) -> None:
        self._watch.follow(stop)
        self.role.run(stop)

    def readiness(self) -> Readiness:
        own = self.role.readiness()
        kafka = self._kafka.problem()
        problems = [kafka] if kafka is not None else self._watch.problems(self._topics)
        if not problems:
            return own
        return Readiness(False, "; ".join([*problems, own.detail]))
