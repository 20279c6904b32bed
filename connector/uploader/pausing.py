"""Back-pressure of the upload loop: which input partitions are paused.

While every upload slot of a lane is busy and as many closed batches wait, that lane takes no
records: when it is the only lane that could take any, the loop skips `consume()` for a moment;
when that lasts (a slow API), when another lane could go on meanwhile, or while a batch of the
lane waits out an API outage, its topic's partitions are paused and `consume()` keeps being
called, so the member stays in its group (a shared topic's partitions pause for every lane on
it). Partitions whose dead letters the broker does not acknowledge are paused too once those
exceed CONNECTOR_DLQ_MAX_PENDING_BYTES.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from connector.kafka.clients import Consumer
from connector.uploader.assignment import InputTopic
from connector.uploader.lane import Lane

BACKLOG_PAUSE_SECONDS = 1.0
"""A backlog (all upload slots busy, as many batches waiting) that lasts this long pauses the
partitions, so that `consume()` can be called again without taking records. A shorter one only
skips `consume()`: pausing purges librdkafka's prefetched records, and a resumed partition waits
for the fetch in progress (up to `fetch.wait.max.ms`, 500 ms) before it is fetched again, which
at full speed halved the throughput. Only while a lane of another topic has records flowing
(it took some within this time) is the backlogged topic paused at once, so that they do not
wait for it; an idle lane, or one on the same topic, keeps the grace."""


def update_pauses(
    consumer: Consumer, topics: Mapping[str, InputTopic], lanes: Sequence[Lane], now: float
) -> None:
    """Pause the partitions back-pressure holds (`topic.paused`), resume the others."""
    wanted: dict[str, set[int]] = {name: set() for name in topics}
    for lane in lanes:
        topic = topics[lane.topic]
        backlogged = lane.backlogged()
        if not backlogged:
            lane.backlogged_since = None
        elif lane.backlogged_since is None:
            lane.backlogged_since = now
        others_go_on = backlogged and any(
            other.topic != lane.topic and _flowing(other, now) for other in lanes
        )
        long_backlog = (
            lane.backlogged_since is not None
            and now - lane.backlogged_since >= BACKLOG_PAUSE_SECONDS
        )
        waits = bool(lane.registry_wait.records)  # for the Schema Registry
        if lane.note_failing() or waits or long_backlog or others_go_on:
            wanted[topic.name] |= topic.assigned
        wanted[topic.name] |= lane.dead_letters.pending_partitions() & topic.assigned
    for name, topic in topics.items():
        chosen = wanted[name]
        if chosen - topic.paused:
            consumer.pause(topic.partitions(chosen - topic.paused))
        if topic.paused - chosen:
            consumer.resume(topic.partitions(topic.paused - chosen))
        topic.paused = chosen
    for topic in topics.values():  # the topic's: once, under its first pipeline
        topic.lanes[0].metrics.paused_partitions.set(len(topic.paused))


def _flowing(lane: Lane, now: float) -> bool:
    """Whether the lane's records flow: it took some within the last `BACKLOG_PAUSE_SECONDS`
    and could take more. Only such a lane on another topic is worth pausing a backlogged
    topic at once for; an idle one, or one on the same topic (paused with it), is not."""
    return (
        lane.took_at is not None
        and now - lane.took_at < BACKLOG_PAUSE_SECONDS
        and bool(lane.partitions)
        and not lane.backlogged()
    )
