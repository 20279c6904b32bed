"""A page's records built ahead on the prefetch thread (`PageRecords.prepare`) are the records the
loop would have built, and what fits the output topic is still decided when the page commits."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from connector.poller.limits import RecordLimits
from connector.poller.page_records import PageRecords
from connector.toloka.models import Item, ItemPage
from tests.unit.poller_fakes import T0, finished_item, poller_settings


def page_of(count: int) -> list[Item]:
    raws = [finished_item(f"i{n}", T0 + n, text="x" * (10 * n)) for n in range(count)]
    return ItemPage.from_api({"content": raws, "has_more": False}).content


class TopicLimits:
    """The output topic's max.message.bytes, as the broker would tell it (changed by tests)."""

    def __init__(self) -> None:
        self.out = 1_000_000

    def read(self, topics: Sequence[str]) -> Mapping[str, int]:
        return {topic: self.out for topic in topics if topic == "out"}


def records_for(topic_limits: TopicLimits) -> tuple[PageRecords, RecordLimits]:
    limits = RecordLimits({}, ("out",), topic_limits.read)
    limits.refresh()
    return PageRecords(poller_settings(), "proj", limits), limits


def test_prepared_records_are_the_records_built_at_commit_time() -> None:
    items = page_of(5)
    records, _ = records_for(TopicLimits())
    built = records.outcome(items[1:4])
    prepared = records.outcome(items[1:4], prepared=records.prepare(items))
    assert prepared.results == built.results
    assert [item.id for item in prepared.published] == ["i1", "i2", "i3"]


def test_an_item_of_another_page_is_built_at_commit_time() -> None:
    records, _ = records_for(TopicLimits())
    prepared = records.prepare(page_of(3))
    other = page_of(3)  # equal items, other objects: not what was prepared
    assert records.outcome(other, prepared=prepared).results == records.outcome(other).results


def test_a_prepared_record_larger_than_the_limit_known_at_commit_is_dead_lettered() -> None:
    items = page_of(4)
    topic_limits = TopicLimits()
    records, limits = records_for(topic_limits)
    prepared = records.prepare(items)
    topic_limits.out = 475  # learned after the records were built: i3's record is larger
    limits.refresh(force=True)
    outcome = records.outcome(items, prepared=prepared)
    assert [item.id for item in outcome.published] == ["i0", "i1", "i2"]
    assert len(outcome.dead_letters) == 1
    assert outcome.reasons == ["result_too_large"]
