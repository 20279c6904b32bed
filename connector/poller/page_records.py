"""The records of one page's transaction, before they are produced: an output record for each
item that fits its topic, a dead letter for each that does not (`result_too_large`) and for an
item that cannot be read even alone (`unreadable_result`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from connector.config import PollerSettings
from connector.contract.dead_letters import RESULT_TOO_LARGE, UNREADABLE_RESULT
from connector.poller.dead_letters import dead_letter
from connector.poller.limits import RecordLimits
from connector.poller.publisher import OutputRecord, output_record, record_key
from connector.poller.unreadable import UnreadableItem
from connector.toloka.models import Item


@dataclass
class PageOutcome:
    """What the records of one transaction are."""

    results: list[OutputRecord] = field(default_factory=list)
    dead_letters: list[OutputRecord] = field(default_factory=list)
    published: list[Item] = field(default_factory=list)
    """The items that got a result (the others of the page were dead-lettered)."""
    reasons: list[str] = field(default_factory=list)
    """The reason of each dead letter (for the metrics)."""
    result_bytes: int = 0
    """The values of `results` together (summed as they are added: the page sizer and a
    transaction's bound read it)."""


PreparedRecords = Mapping[str, tuple[Item, OutputRecord, int]]
"""Output records built ahead with their sizes (`prepare`): item id → (the item, its record,
the record's size)."""


class PageRecords:
    """Builds a PageOutcome for the items a page publishes."""

    def __init__(self, settings: PollerSettings, app_project_id: str, limits: RecordLimits) -> None:
        self._settings = settings
        self._project = app_project_id
        self._limits = limits

    def prepare(self, items: Sequence[Item]) -> PreparedRecords:
        """The output record of each of `items` and its size, built before it is known which
        the page publishes: on the prefetch thread, while the loop waits for a transaction to
        commit. What fits the topic is decided by `outcome`, with the limits known then."""
        key_field, project = self._settings.key_field, self._project
        prepared: dict[str, tuple[Item, OutputRecord, int]] = {}
        for item in items:
            record, size = output_record(item, key_field=key_field, app_project_id=project)
            prepared[item.id] = (item, record, size)
        return prepared

    def outcome(
        self,
        publish: Sequence[Item],
        unreadable: UnreadableItem | None = None,
        prepared: PreparedRecords | None = None,
    ) -> PageOutcome:
        """`prepared`: records `prepare` built, used for the very items they were built from;
        the others are built here."""
        outcome = PageOutcome()
        # The limits change only between pages (a refusal aborts the page): read once per page.
        limit = self._limits.limit(self._settings.output_topic)
        results, published = outcome.results, outcome.published
        result_bytes = 0
        for item in publish:
            built = prepared.get(item.id) if prepared else None
            if built is not None and built[0] is item:
                _, record, size = built
            else:
                record, size = output_record(
                    item, key_field=self._settings.key_field, app_project_id=self._project
                )
            if size <= limit:
                results.append(record)
                published.append(item)
                result_bytes += len(record.value)
            else:
                outcome.dead_letters.append(self._too_large_letter(item, record, size))
                outcome.reasons.append(RESULT_TOO_LARGE)
        if unreadable is not None:
            outcome.dead_letters.append(self._unreadable_letter(unreadable))
            outcome.reasons.append(UNREADABLE_RESULT)
        outcome.result_bytes = result_bytes
        return outcome

    def _too_large_letter(self, item: Item, record: OutputRecord, size: int) -> OutputRecord:
        topic = self._settings.output_topic
        message = (
            f"the result record takes {size} bytes; {topic} accepts at most "
            f"{self._limits.limit(topic)} (the lowest of its max.message.bytes, the producer's "
            "message.max.bytes, and what the broker refused): too large to publish"
        )
        return dead_letter(
            RESULT_TOO_LARGE,
            message,
            item_id=item.id,
            app_project_id=item.app_project_id or self._project,
            key=record.key,
            fields=item.raw,
            limit=self._limits.limit(self._settings.dlq_topic),
        )

    def _unreadable_letter(self, entry: UnreadableItem) -> OutputRecord:
        input_data = entry.fields.get("input_data")
        stand_in = Item(id=entry.id, input_data=input_data if isinstance(input_data, dict) else {})
        return dead_letter(
            UNREADABLE_RESULT,
            f"the item cannot be read even alone: {entry.problem}",
            item_id=entry.id,
            app_project_id=self._project,
            key=record_key(stand_in, self._settings.key_field).encode(),
            fields=entry.fields,
            raw=entry.raw,
            limit=self._limits.limit(self._settings.dlq_topic),
        )
