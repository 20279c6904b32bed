"""Reading the topics back and judging a run: what was lost, repeated or unknown, and which
kill or fault explains each repetition."""

from __future__ import annotations

import collections
import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import orjson
from confluent_kafka import Message

from connector.simulator.process import SimulatorProcess
from testkit.kafka import headers_of
from testkit.scenarios.workload import Workload


@dataclass
class KillMark:
    """What existed when a connector process had just been killed."""

    at: float  # monotonic
    items_created: int
    output_ends: dict[int, int]
    dlq_ends: dict[int, int]
    cause: str = "kill"
    """"kill" (the connector was SIGKILLed) or "broker fault" (taken before the fault began)."""


@dataclass
class Verdict:
    valid: int
    invalid: int
    lost_results: list[str]
    lost_dead_letters: list[int]
    wrong_reasons: list[tuple[int, str, str]]
    unknown_results: list[str]
    unknown_dead_letters: list[str]
    results_without_valid_json: int
    repeated_uploads: int
    """Creations beyond the first, per input key (the simulator's count)."""
    repeated_uploads_by_cause: dict[str, int]
    repeated_results: int
    """Output records beyond the first per Toloka item id, for read_committed readers."""
    repeated_results_by_cause: dict[str, int]
    repeated_dead_letters: int
    repeated_dead_letters_by_cause: dict[str, int]
    notes: list[str] = field(default_factory=list)

    @property
    def lost(self) -> int:
        return len(self.lost_results) + len(self.lost_dead_letters)

    @property
    def unknown(self) -> int:
        return (
            len(self.unknown_results)
            + len(self.unknown_dead_letters)
            + self.results_without_valid_json
            + len(self.wrong_reasons)
        )

    def unattributed(self) -> int:
        return (
            self.repeated_uploads_by_cause.get("unexplained", 0)
            + self.repeated_results_by_cause.get("unexplained", 0)
            + self.repeated_dead_letters_by_cause.get("unexplained", 0)
        )


def creations_by_key(simulator: SimulatorProcess) -> dict[str, list[int]]:
    """input `id` -> the creation positions (0-based, in creation order) of its items."""
    positions: dict[str, list[int]] = collections.defaultdict(list)
    after: str | None = None
    index = 0
    with simulator.client() as http:
        while True:
            params = {"sort": "id", "limit": "1000", **({"after_id": after} if after else {})}
            response = http.get(simulator.items_url, params=params)
            response.raise_for_status()
            page = orjson.loads(response.content)
            for item in page["content"]:
                positions[str(item["input_data"].get("id"))].append(index)
                index += 1
            if not page["has_more"] or not page["content"]:
                return dict(positions)
            after = page["content"][-1]["id"]


def _between(marks: Sequence[KillMark], first: int, second: int) -> str | None:
    """The cause of a mark whose item count lies in (first, second], kills first."""
    causes = {m.cause for m in marks if first < m.items_created <= second}
    return "kill" if "kill" in causes else next(iter(sorted(causes)), None)


def _attribute_offsets(
    copies: Mapping[str, list[tuple[int, int]]],
    marks: Sequence[KillMark],
    ends: str,
    other_cause: str,
) -> tuple[int, dict[str, int]]:
    repeated = 0
    causes: collections.Counter[str] = collections.Counter()
    for found in copies.values():
        if len(found) < 2:
            continue
        ordered = sorted(found)
        for (p1, o1), (p2, o2) in itertools.pairwise(ordered):
            repeated += 1
            found_causes = {
                m.cause
                for m in marks
                if (p1 == p2 and o1 < getattr(m, ends).get(p1, 0) <= o2)
                or (p1 != p2 and getattr(m, ends).get(p2, 0) <= o2)
            }
            if "kill" in found_causes:
                causes["kill"] += 1
            elif found_causes:
                causes[sorted(found_causes)[0]] += 1
            else:
                causes[other_cause] += 1
    return repeated, dict(causes)


def judge(
    workload: Workload,
    results: Iterable[Message],
    dead_letters: Iterable[Message],
    creations: Mapping[str, list[int]],
    marks: Sequence[KillMark],
    *,
    lost_response_faults: bool,
    aborts_visible: bool,
) -> Verdict:
    valid_keys = workload.valid_keys()
    invalid = workload.invalid()

    result_keys: set[str] = set()
    unknown_results: list[str] = []
    not_json = 0
    copies: dict[str, list[tuple[int, int]]] = collections.defaultdict(list)
    for message in results:
        key = (message.key() or b"").decode(errors="replace")
        try:
            value = orjson.loads(message.value() or b"")
            if not isinstance(value, dict) or value.get("input_data", {}).get("id") != key:
                not_json += 1
        except orjson.JSONDecodeError:
            not_json += 1
        if key not in valid_keys:
            unknown_results.append(key)
        result_keys.add(key)
        item_id = headers_of(message).get("toloka-item-id", "")
        copies[item_id].append((message.partition() or 0, message.offset() or 0))

    letters: dict[int, list[tuple[int, int]]] = collections.defaultdict(list)
    reasons: dict[int, str] = {}
    unknown_letters: list[str] = []
    for message in dead_letters:
        headers = headers_of(message)
        seq_text = headers.get("seq", "")
        if not seq_text.isdigit() or int(seq_text) not in invalid:
            unknown_letters.append(seq_text)
            continue
        seq = int(seq_text)
        letters[seq].append((message.partition() or 0, message.offset() or 0))
        reasons[seq] = headers.get("error-reason", "")
    wrong = [(seq, invalid[seq], got) for seq, got in reasons.items() if got != invalid[seq]]

    # Repeated uploads: a key created on both sides of a kill is the kill's doing, on both sides
    # of the start of a broker fault the fault's (a group rebalance re-reads what was not
    # committed); otherwise only a lost response (applied, answer reset) can explain it.
    upload_causes: collections.Counter[str] = collections.Counter()
    repeated_uploads = 0
    for key, positions in creations.items():
        for first, second in itertools.pairwise(positions):
            repeated_uploads += 1
            between = _between(marks, first, second)
            if between is not None:
                upload_causes[between] += 1
            elif lost_response_faults:
                upload_causes["lost_response"] += 1
            else:
                upload_causes["unexplained"] += 1
        if key not in valid_keys:
            unknown_results.append(f"uploaded:{key}")

    other = "aborted_txn_visible_on_mock" if aborts_visible else "unexplained"
    repeated_results, result_causes = _attribute_offsets(copies, marks, "output_ends", other)
    repeated_letters, letter_causes = _attribute_offsets(
        {str(seq): found for seq, found in letters.items()}, marks, "dlq_ends", "unexplained"
    )
    return Verdict(
        valid=len(valid_keys),
        invalid=len(invalid),
        lost_results=sorted(valid_keys - result_keys),
        lost_dead_letters=sorted(set(invalid) - set(letters)),
        wrong_reasons=wrong,
        unknown_results=unknown_results,
        unknown_dead_letters=unknown_letters,
        results_without_valid_json=not_json,
        repeated_uploads=repeated_uploads,
        repeated_uploads_by_cause=dict(upload_causes),
        repeated_results=repeated_results,
        repeated_results_by_cause=result_causes,
        repeated_dead_letters=repeated_letters,
        repeated_dead_letters_by_cause=letter_causes,
    )
