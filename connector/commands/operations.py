"""`status`, `reset-cursor` and `replay-dlq`: look at a running connector, move its cursor, put
dead letters back. The work is in `connector.operations`; here are argv, output and exit codes
(0 done, 1 a runtime failure such as a missing topic or a refused reset, 2 a configuration error,
130 interrupted by Ctrl-C, after saying what was done).
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from datetime import datetime

import orjson

from connector.app.clients import build_client
from connector.commands.catalog import summary
from connector.commands.common import (
    Subparsers,
    add_pipeline_argument,
    add_settings_arguments,
    chosen_pipeline,
    pipeline_from_args,
    settings_from_args,
)
from connector.commands.exit_codes import EXIT_INTERRUPTED
from connector.config import (
    API_GROUPS,
    CursorSettings,
    CursorWriteSettings,
    GroupSettings,
    InputTopicSettings,
    KafkaSettings,
    ProjectSettings,
    Settings,
)
from connector.contract.cursor import Cursor
from connector.contract.dead_letters import REPLAYABLE_REASONS, UPLOADER_REASONS
from connector.contract.leadership import leader_status
from connector.errors import ConnectorError
from connector.interrupts import librdkafka_call
from connector.kafka.reads import require_topics
from connector.logs import configure_logging
from connector.metrics import Metrics
from connector.operations.cursor_moves import (
    cursor_after_item,
    cursor_from_time,
    latest_cursor,
    parse_instant,
    refusal,
)
from connector.operations.dead_letter_records import DeadLetter
from connector.operations.replay import ReplayRequest, replay_dead_letters
from connector.operations.status import describe_cursor, gather_status
from connector.poller.reset import write_cursor
from connector.poller.state import read_cursor

KAFKA_TIMEOUT_SECONDS = 30.0


# --- status ------------------------------------------------------------------------------------

STATUS_HELP = summary("status")
STATUS_SETTINGS = (
    ProjectSettings,
    KafkaSettings,
    InputTopicSettings,
    GroupSettings,
    CursorSettings,
)
STATUS_DESCRIPTION = f"""Print {STATUS_HELP}:

  cursor        the last item the poller published (after_id) and the finished_at it stands
                for; its age is how far the published results are behind now
  leader        the poller that wrote the cursor and how long ago; alive while that is less
                than CONNECTOR_LEADER_TIMEOUT_SECONDS (the leader writes at least every quarter
                of it), stale after
  uploader lag  records of CONNECTOR_INPUT_TOPIC after the committed offsets of
                CONNECTOR_GROUP_ID, per partition and in total
  dead letters  records retained in CONNECTOR_DLQ_TOPIC (per error-reason with --by-reason)

Reads Kafka only: it joins no group and commits nothing. Exits 0 when it could report, 1 when a
topic is missing or Kafka cannot be reached, 130 when Ctrl-C interrupts it."""


def run_status(args: argparse.Namespace) -> int:
    try:
        return show_status(args)
    except KeyboardInterrupt:
        print("status: interrupted before it could report (it only reads: nothing was changed)",
              file=sys.stderr)  # fmt: skip
        return EXIT_INTERRUPTED


def show_status(args: argparse.Namespace) -> int:
    every = settings_from_args(args)
    settings = chosen_pipeline(every, args.app_project)
    configure_logging("text", "ERROR")
    status = gather_status(
        settings, now=time.time(), by_reason=args.by_reason, timeout=KAFKA_TIMEOUT_SECONDS
    )
    print(orjson.dumps(status.as_json()).decode() if args.json else status.as_text())
    return 0


def register_status(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser("status", help=STATUS_HELP, description=STATUS_DESCRIPTION)
    add_settings_arguments(parser, STATUS_SETTINGS)
    add_pipeline_argument(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")
    parser.add_argument(
        "--by-reason",
        action="store_true",
        help="count the dead letters per error-reason (reads the whole dead-letter topic)",
    )
    parser.set_defaults(func=run_status)


# --- reset-cursor ------------------------------------------------------------------------------

RESET_HELP = summary("reset-cursor")
RESET_SETTINGS = (ProjectSettings, KafkaSettings, GroupSettings, CursorWriteSettings)
"""What every reset uses; --to-item also calls the API (API_GROUPS)."""
RESET_DESCRIPTION = """Replace the poller's cursor: finished items are published again, or skipped.

Choose exactly one move; what it costs read_committed consumers of CONNECTOR_OUTPUT_TOPIC:
  --to-item ID   the items listed after item ID (sort=finished) are published next. An item
                 older than the cursor publishes again everything after it (duplicates); a
                 newer one skips every finished item between the cursor and it (never
                 published: loss). ID itself is not published again. Needs the Apps API.
  --to-time T    the items finished at or after T are published next. T before the cursor's
                 finished_at: those items are published again (duplicates); after it: the
                 unpublished items finished before T are skipped (loss).
  --latest       only items finished from now on are published: every finished item not yet
                 published is skipped (loss), nothing is repeated.
The late window's memory of published ids is cleared with the move; the new cursor is set so
that no item the move leaves behind is published by the look-back scan.

Safety: the cursor is written in a transaction under the poller's transactional id. While a
poller is active (its last cursor record is younger than CONNECTOR_LEADER_TIMEOUT_SECONDS) the
reset is refused (a poller that stopped cleanly released its leadership and does not count;
one that was killed counts until the timeout has passed: wait, or use --force);
--force fences that poller instead: it steps down, and the next leader (a standby, or the same
process a moment later) continues from the new cursor. --dry-run prints the move and writes
nothing and exits 0, saying whether the reset would be written or refused. Exits 1 when the
reset is refused or the state topic is missing; 130 when Ctrl-C interrupts it (it says whether
the cursor was written)."""


def parse_instant_argument(text: str) -> datetime:
    try:
        return parse_instant(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def planned_cursor(args: argparse.Namespace, settings: Settings, now: float) -> Cursor:
    project = settings.project.app_project_id
    window = settings.get(CursorWriteSettings).late_window_seconds
    if args.latest:
        return latest_cursor(project, now=now, late_window_seconds=window)
    if args.to_time is not None:
        return cursor_from_time(project, args.to_time, now=now, late_window_seconds=window)
    with build_client(settings, Metrics()) as client:
        item = client.get_item(args.to_item)
    if item.finished_at is None:
        raise ConnectorError(
            f"item {item.id} has not finished (status {item.status}): only a finished item "
            "can be a cursor position"
        )
    return cursor_after_item(
        project, item.id, item.finished_at, now=now, late_window_seconds=window
    )


def run_reset_cursor(args: argparse.Namespace) -> int:
    settings = pipeline_from_args(args, (*RESET_SETTINGS, *(API_GROUPS if args.to_item else ())))
    written = threading.Event()
    try:
        return reset_cursor(args, settings, written)
    except KeyboardInterrupt:
        if written.is_set():
            print("reset-cursor: interrupted after the new cursor was written", file=sys.stderr)
        else:
            print("reset-cursor: interrupted before writing: the cursor was not changed",
                  file=sys.stderr)  # fmt: skip
        return EXIT_INTERRUPTED


def reset_cursor(args: argparse.Namespace, settings: Settings, written: threading.Event) -> int:
    """The reset; Ctrl-C while the cursor is written waits for the write to end (`written`)."""
    configure_logging("text", "ERROR")
    kafka_config = settings.kafka.client_config()
    poller = settings.get(CursorWriteSettings)
    group_id = settings.get(GroupSettings).group_id
    require_topics(kafka_config, [poller.state_topic], KAFKA_TIMEOUT_SECONDS)
    current = read_cursor(
        kafka_config,
        poller.state_topic,
        settings.project.app_project_id,
        group_id=group_id,
        timeout_seconds=KAFKA_TIMEOUT_SECONDS,
    )
    now = time.time()
    leader = (
        None
        if current is None
        else leader_status(current, now=now, leader_timeout_seconds=poller.leader_timeout_seconds)
    )
    print(f"current cursor: {'none' if current is None else describe_cursor(current)}",
          flush=True)  # fmt: skip
    if leader is not None and leader.holder is not None:
        state = "active" if leader.alive else "stale"
        since = leader.seconds_since_write
        print(f"poller:         {leader.holder}, last wrote {since:.1f}s ago ({state})")
    cursor = planned_cursor(args, settings, now)
    print(f"new cursor:     {describe_cursor(cursor)}")
    why_not = refusal(current, leader, force=args.force)
    if args.dry_run:  # it answers the question asked: what would happen
        would = "be written" if why_not is None else f"be refused: {why_not}"
        print(f"dry run: nothing written; the reset would {would}")
        return 0
    if why_not is not None:
        raise ConnectorError(f"refused: {why_not}")
    with librdkafka_call():  # one transaction: a Ctrl-C waits for its outcome
        write_cursor(
            kafka_config,
            poller.state_topic,
            cursor,
            group_id=group_id,
            timeout_seconds=poller.transaction_timeout_seconds,
        )
        written.set()
    fenced = " (the active poller was fenced and steps down)" if leader and leader.alive else ""
    print(f"cursor written{fenced}; the next leading poller continues from it")
    return 0


def register_reset_cursor(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser("reset-cursor", help=RESET_HELP, description=RESET_DESCRIPTION)
    add_settings_arguments(parser, (*RESET_SETTINGS, *API_GROUPS))
    add_pipeline_argument(parser)
    move = parser.add_argument_group("move (exactly one)").add_mutually_exclusive_group(
        required=True
    )
    move.add_argument("--to-item", metavar="ID", help="continue after this finished item")
    move.add_argument(
        "--to-time",
        metavar="T",
        type=parse_instant_argument,
        help="publish items finished at or after T (ISO-8601, UTC without an offset; or unix "
        "seconds)",
    )
    move.add_argument(
        "--latest", action="store_true", help="publish only items finished from now on"
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="write even while a poller is active (it is fenced and steps down) or when the "
        "project has no cursor yet",
    )
    parser.add_argument("--dry-run", action="store_true", help="print the move, write nothing")
    parser.set_defaults(func=run_reset_cursor)


# --- replay-dlq --------------------------------------------------------------------------------

REPLAY_HELP = summary("replay-dlq")
REPLAY_SETTINGS = (KafkaSettings, InputTopicSettings)  # neither the API key nor the project
REPLAY_DESCRIPTION = f"""Re-publish dead letters of CONNECTOR_DLQ_TOPIC to CONNECTOR_INPUT_TOPIC
({REPLAY_HELP}).

Each replayed record gets its original key, value and headers back (the connector's error-* and
source-* headers removed) plus a header replayed-from=<topic>/<partition>/<offset> naming its
dead letter. The topic is read from --from-offset to where it ended when the replay began
(dead letters written meanwhile wait for the next replay); nothing is deleted from it and no
offset is committed, so replaying twice puts the records back twice.

Reasons (--reason, repeatable): {", ".join(UPLOADER_REASONS)}.
Default: {", ".join(REPLAYABLE_REASONS)}: their cause lies outside the record (the
app's input_spec, the API's verdict, CONNECTOR_MAX_RECORD_BYTES), so once it is fixed the same
record goes through. invalid_json and not_an_object records carry the same bytes when replayed
and fail again; name them to replay them anyway. Dead letters keep their value whole; those
whose value an earlier version dropped (too large for the dead-letter topic) are never replayed.

Exits 0 after a replay, 1 when a topic is missing or a record was not delivered, 130 when
Ctrl-C interrupts it: what was sent is flushed first, and it says how many records were replayed
and, for a one-partition dead-letter topic, the --from-offset that continues the replay."""


def run_replay_dlq(args: argparse.Namespace) -> int:
    settings = pipeline_from_args(args)
    kafka, uploader = settings.kafka, settings.get(InputTopicSettings)
    configure_logging("text", "ERROR")
    request = ReplayRequest(
        dlq_topic=uploader.dlq_topic,
        input_topic=uploader.input_topic,
        reasons=frozenset(args.reason or REPLAYABLE_REASONS),
        from_offset=args.from_offset,
        max_records=args.max,
        dry_run=args.dry_run,
    )

    def show(dead_letter: DeadLetter) -> None:
        if args.dry_run:
            key = "null" if dead_letter.key is None else dead_letter.key.decode(errors="replace")
            print(f"would replay {dead_letter.location} ({dead_letter.reason}) key={key}")

    summary = replay_dead_letters(
        kafka.client_config(), request, timeout=KAFKA_TIMEOUT_SECONDS, on_selected=show
    )
    target = f"{request.dlq_topic} -> {request.input_topic}"
    print(f"{target}: " + "\n".join(summary.lines(args.dry_run)))
    return EXIT_INTERRUPTED if summary.interrupted else 0


def non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is negative")
    return value


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not positive")
    return value


def register_replay_dlq(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser("replay-dlq", help=REPLAY_HELP, description=REPLAY_DESCRIPTION)
    add_settings_arguments(parser, REPLAY_SETTINGS)
    add_pipeline_argument(parser)
    parser.add_argument(
        "--reason",
        action="append",
        choices=UPLOADER_REASONS,
        help=f"replay dead letters with this error-reason (repeatable; default: "
        f"{', '.join(REPLAYABLE_REASONS)})",
    )
    parser.add_argument(
        "--from-offset",
        type=non_negative,
        default=0,
        metavar="N",
        help="start at this offset in every partition of the dead-letter topic (default: the "
        "first retained record)",
    )
    parser.add_argument(
        "--max", type=positive, metavar="N", help="replay at most this many records"
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="list the dead letters that would be replayed and count them; produce nothing",
    )
    parser.set_defaults(func=run_replay_dlq)


def register(subparsers: Subparsers) -> None:
    register_status(subparsers)
    register_reset_cursor(subparsers)
    register_replay_dlq(subparsers)
