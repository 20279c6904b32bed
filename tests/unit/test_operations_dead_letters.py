"""Dead letters read back: the original record is recovered from what the uploader's writer
produced (the writer's own header function builds the dead letters here), and `replay-dlq`'s
selection by reason."""

from __future__ import annotations

import socket

import pytest
from confluent_kafka import Message

from connector.contract.dead_letters import (
    REPLAYABLE_REASONS,
    REPLAYED_FROM_HEADER,
    VALUE_DROPPED_HEADER,
)
from connector.errors import KafkaOperationError
from connector.kafka.clients import Header
from connector.operations.dead_letter_records import NO_REASON, read_dead_letter
from connector.operations.replay import ReplaySummary, _Republisher, select
from connector.uploader.dead_letters import dead_letter_headers
from connector.uploader.decode import Refusal

ORIGINAL_HEADERS: list[Header] = [("trace", b"t-1"), ("empty", None), ("trace", b"t-2")]


def input_record(headers: list[Header]) -> Message:
    return Message(
        topic="toloka.items", partition=2, offset=41, key=b"k", value=b'{"x":1}', headers=headers
    )


def dead_letter_message(
    reason: str,
    headers: list[Header] | None = None,
    offset: int = 7,
    extra: tuple[Header, ...] = (),
) -> Message:
    original = input_record(ORIGINAL_HEADERS if headers is None else headers)
    written = [*dead_letter_headers(original, Refusal(reason, "why"), "req-1"), *extra]
    return Message(
        topic="dlq", partition=0, offset=offset, key=b"k", value=b'{"x":1}', headers=written
    )


def test_the_original_record_comes_back_without_the_connector_headers() -> None:
    dead_letter = read_dead_letter(dead_letter_message("rejected"))
    assert dead_letter.reason == "rejected"
    assert dead_letter.key == b"k"
    assert dead_letter.value == b'{"x":1}'
    assert list(dead_letter.original_headers) == ORIGINAL_HEADERS
    assert not dead_letter.value_dropped
    assert dead_letter.location == "dlq/0/7"


def test_replayed_records_carry_their_origin_last() -> None:
    headers = read_dead_letter(dead_letter_message("rejected")).replay_headers()
    assert headers == [*ORIGINAL_HEADERS, (REPLAYED_FROM_HEADER, b"dlq/0/7")]


def test_original_headers_with_the_connector_names_are_kept() -> None:
    """A record dead-lettered, replayed and dead-lettered again: its first dead letter's headers
    are part of what the second one must restore."""
    first = dead_letter_message("invalid_item")
    replayed = read_dead_letter(first).replay_headers()
    second = read_dead_letter(dead_letter_message("rejected", headers=replayed, offset=9))
    assert second.reason == "rejected"
    assert list(second.original_headers) == replayed


def test_a_record_without_a_reason_is_unknown_and_keeps_every_header() -> None:
    dead_letter = read_dead_letter(input_record(ORIGINAL_HEADERS))
    assert dead_letter.reason == NO_REASON
    assert list(dead_letter.original_headers) == ORIGINAL_HEADERS


def test_a_dropped_value_is_noticed() -> None:
    message = dead_letter_message("too_large", extra=((VALUE_DROPPED_HEADER, b"2000000 bytes"),))
    dead_letter = read_dead_letter(message)
    assert dead_letter.value_dropped
    assert list(dead_letter.original_headers) == ORIGINAL_HEADERS


def test_selection_counts_replayed_left_alone_and_unreplayable() -> None:
    summary = ReplaySummary()
    letters = [
        dead_letter_message("rejected"),
        dead_letter_message("rejected"),
        dead_letter_message("invalid_json"),
        dead_letter_message("too_large", extra=((VALUE_DROPPED_HEADER, b"9 bytes"),)),
        input_record([]),
    ]
    chosen = [select(read_dead_letter(m), REPLAYABLE_REASONS, summary) for m in letters]
    assert chosen == [True, True, False, False, False]
    assert summary.replayed == {"rejected": 2}
    assert summary.not_selected == {"invalid_json": 1, NO_REASON: 1}
    assert summary.value_dropped == {"too_large": 1}
    assert summary.lines(dry_run=True) == [
        "would replay 2 record(s)",
        "  rejected: 2",
        "left alone (reason not selected): 2",
        "  invalid_json: 1",
        f"  {NO_REASON}: 1",
        "not replayable (value dropped from the dead letter): 1",
    ]


def test_malformed_json_is_not_replayed_by_default() -> None:
    assert "invalid_json" not in REPLAYABLE_REASONS
    assert "not_an_object" not in REPLAYABLE_REASONS


def test_a_replay_whose_queue_stays_full_fails_at_its_timeout_instead_of_waiting_forever() -> None:
    # A real producer facing no broker (a closed port): nothing is delivered, the queue of one
    # record stays full.
    with socket.create_server(("127.0.0.1", 0)) as closed:
        address = f"127.0.0.1:{closed.getsockname()[1]}"
    config = {"bootstrap.servers": address, "queue.buffering.max.messages": "1"}
    republisher = _Republisher(config, "toloka.items", ReplaySummary(), timeout=0.5)
    letter = read_dead_letter(dead_letter_message("too_large", ORIGINAL_HEADERS))
    republisher.produce(letter)
    with pytest.raises(KafkaOperationError, match=r"queue for toloka\.items stayed full"):
        republisher.produce(letter)


def test_an_interrupted_replay_says_what_was_delivered_and_how_to_go_on() -> None:
    summary = ReplaySummary(interrupted=True)
    summary.replayed["rejected"] = 11  # selected; the last one was never handed to the producer
    summary.sent = 10
    summary.delivered["rejected"] = 10
    summary.delivered_up_to[0] = 10
    assert summary.lines(dry_run=False) == [
        "interrupted: replayed 10 record(s) before it stopped (delivered)",
        "  rejected: 10",
        "the dead letters before these offsets were replayed: partition 0: 10",
        "to continue where it stopped: replay-dlq --from-offset 10",
    ]
    summary.sent = 12
    assert summary.lines(dry_run=False)[2] == (
        "2 more record(s) were sent but not confirmed: they may have been replayed too"
    )
