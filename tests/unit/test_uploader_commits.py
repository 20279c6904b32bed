"""The upload loop's commits (`connector.uploader.commits`): a synchronous commit the broker did
not answer is never taken as landed, and no background commit is sent beside it."""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any, cast

import pytest
from confluent_kafka import TopicPartition

from connector.clock import SystemClock
from connector.kafka.bounded import BoundedConsumerCalls
from connector.metrics import Metrics
from connector.uploader.assignment import InputTopic
from connector.uploader.commits import Committer
from testkit.waiting import wait_for


class SilentCoordinator:
    """Synchronous commits wait for `answer`; background ones are recorded."""

    def __init__(self) -> None:
        self.answer = threading.Event()
        self.landed: list[dict[int, int]] = []
        self.background: list[dict[int, int]] = []

    def commit(self, *, offsets: list[TopicPartition], asynchronous: bool = True) -> Any:
        if asynchronous:
            self.background.append({tp.partition: tp.offset for tp in offsets})
            return None
        self.answer.wait()
        self.landed.append({tp.partition: tp.offset for tp in offsets})
        return offsets


def test_an_unanswered_commit_is_sent_again_and_no_background_commit_goes_beside_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    coordinator = SilentCoordinator()
    lane = SimpleNamespace(reconciler=None, topic="items", metrics=Metrics(app_project="p"))
    topic = InputTopic("items", [cast(Any, lane)], cast(Any, None), routed=False)
    calls = BoundedConsumerCalls(cast(Any, coordinator))
    commits = Committer(cast(Any, coordinator), calls, {"items": topic}, SystemClock(), 0.1)
    topic.offsets.assign({0})
    generation = topic.offsets.consumed_offsets(0, [0, 1, 2])
    assert generation is not None
    topic.offsets.done_offsets(0, [0, 1, 2], generation)
    try:
        commits.commit(commits.positions(), asynchronous=False, final=True, wait=0.05)
        assert "offset commit failed: offset commit: no answer from Kafka within 0.05s" in (
            caplog.text
        )
        assert commits.positions(only_moved=True) == {"items": {0: 3}}, "taken as landed"
        commits.commit(commits.positions(only_moved=True), asynchronous=True)
        assert coordinator.background == [], "a background commit could land before it"
    finally:
        coordinator.answer.set()
    wait_for(lambda: not calls.pending, "the late answer")
    commits.commit(commits.positions(), asynchronous=False, final=True, wait=5)
    assert coordinator.landed == [{0: 3}, {0: 3}]
    assert commits.positions(only_moved=True) == {"items": {}}
