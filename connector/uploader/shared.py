"""The process's one upload loop, shared by the uploader roles of its pipelines.

Each pipeline's `Uploader` reads its app's `input_spec` in its own thread and `join`s with its
lane's parts; the first pipeline's role `run`s the loop once every pipeline has joined (a
stop before that ends the wait), the others wait for the stop. The loop reads every input topic
with one consumer in the one group; each role's readiness reads its own lane.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from connector.clock import Clock
from connector.config import Settings
from connector.kafka.clients import Consumer, Producer
from connector.lifecycle import Heartbeat
from connector.stop_budget import drain_seconds
from connector.uploader.assignment import InputTopic
from connector.uploader.lane import Lane, LaneParts
from connector.uploader.loop import Completed, UploadLoop
from connector.uploader.migration import PreviousGroups
from connector.uploader.offsets import OffsetTracker
from connector.uploader.routing import Reader, input_routes
from connector.uploader.upload import BatchOutcome

ConsumerFactory = Callable[[Callable[[str], None]], Consumer]
"""Creates the input consumer, given the `stats_cb` that reports consumer lag."""
ProducerFactory = Callable[[], Producer]

JOIN_CHECK_SECONDS = 0.1
"""How often a wait for the other pipelines looks at the stop event."""


class SharedLoop:
    """The process's one upload loop, built when every pipeline's uploader has joined: one
    consumer and one dead-letter producer, a `Lane` per pipeline, an `InputTopic` per input
    topic; run by the first pipeline's role, read by every role's readiness."""

    def __init__(
        self,
        pipelines: Sequence[Settings],
        consumer_factory: ConsumerFactory,
        producer_factory: ProducerFactory,
        clock: Clock,
        *,
        previous_groups: PreviousGroups | None = None,
    ) -> None:
        """`previous_groups`: the groups routed pipelines read in before (`migration`)."""
        self._pipelines = list(pipelines)
        self._consumer_factory = consumer_factory
        self._producer_factory = producer_factory
        self._clock = clock
        self._previous_groups = previous_groups
        self._joined: dict[int, tuple[LaneParts, Heartbeat]] = {}
        self._lanes: list[Lane] = []
        self._changed = threading.Condition()

    def join(self, index: int, parts: LaneParts, heartbeat: Heartbeat) -> None:
        """Pipeline `index`'s lane is ready to run (its spec read); the loop beats `heartbeat`."""
        with self._changed:
            self._joined[index] = (parts, heartbeat)
            self._changed.notify_all()

    def lane(self, index: int) -> Lane | None:
        """Pipeline `index`'s lane, once the loop started (safe from any thread)."""
        lanes = self._lanes
        return lanes[index] if lanes else None

    def last_progress_at(self, index: int) -> float | None:
        """When any pipeline on pipeline `index`'s input topic last uploaded or dead-lettered a
        record (None before the loop started): on a shared topic the records behind may all be
        another pipeline's."""
        lanes = self._lanes
        if not lanes:
            return None
        topic = lanes[index].topic
        return max(lane.last_progress_at for lane in lanes if lane.topic == topic)

    def wait_started(self, stop: threading.Event) -> None:
        """Until the loop started, or `stop`."""
        with self._changed:
            while not self._lanes and not stop.is_set():
                self._changed.wait(JOIN_CHECK_SECONDS)

    def run(self, stop: threading.Event, heartbeat: Heartbeat) -> None:
        """Once every pipeline joined: consume and upload until `stop` (`UploadLoop.run`)."""
        with heartbeat.waiting_on("the other pipelines' input_spec"), self._changed:
            while len(self._joined) < len(self._pipelines) and not stop.is_set():
                self._changed.wait(JOIN_CHECK_SECONDS)
        if stop.is_set():
            return
        joined = [self._joined[index] for index in range(len(self._pipelines))]
        lag_reporters = [parts.lag for parts, _ in joined]

        def on_statistics(stats_json: str) -> None:
            for lag in lag_reporters:
                lag.on_statistics(stats_json)

        consumer = self._consumer_factory(on_statistics)
        producer = self._producer_factory()
        completed: Completed = Completed()

        def delivered(lane: Lane, outcome: BatchOutcome | BaseException) -> None:
            if isinstance(outcome, BaseException):
                # The role ends without draining (`loop`): no batch handed ahead to any
                # pipeline's request threads may start now; what was not committed is read
                # again by the next reader.
                for each in lanes:
                    each.close()
            completed.put((lane, outcome))

        trackers: dict[str, OffsetTracker] = {}
        lanes = [
            Lane(
                parts,
                offsets=trackers.setdefault(parts.settings.input_topic, OffsetTracker()),
                producer=producer,
                clock=self._clock,
                deliver=delivered,
            )
            for parts, _ in joined
        ]

        readers = [
            Reader(lane.topic, lane.app_project, settings.uploader.route_by_header, lane)
            for lane, settings in zip(lanes, self._pipelines, strict=True)
        ]
        topics = [
            InputTopic(
                name,
                [lane for lane in lanes if lane.topic == name],
                route,
                routed=any(r.route_by_header for r in readers if r.topic == name),
                offsets=trackers[name],
            )
            for name, route in input_routes(readers).items()
        ]
        for topic in topics:  # the topic's own gauges, once: under its first pipeline
            for lane in topic.lanes[1:]:
                lane.lag.publishes = False
        loop = UploadLoop(
            self._pipelines[0].uploader,
            consumer=consumer,
            producer=producer,
            topics=topics,
            completed=completed,
            clock=self._clock,
            heartbeats=[beat for _, beat in joined],
            drain_seconds=drain_seconds(
                self._pipelines[0].uploader.drain_timeout_seconds,
                self._pipelines[0].runtime.shutdown_timeout_seconds,
            ),
            previous_groups=self._previous_groups,
        )
        with self._changed:
            self._lanes = lanes
            self._changed.notify_all()
        loop.run(stop)
