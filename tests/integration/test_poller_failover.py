"""Pollers as processes (`python -m connector poll`): kill -9, restart, standby take-over, and a
frozen leader waking up after its standby took over."""

from __future__ import annotations

import random
import signal
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from connector.devtools.brokers.base import Capability
from testkit.brokers import ControllableBroker
from testkit.processes import ConnectorProcess
from testkit.waiting import wait_for
from tests.fixtures.brokers import NewTopic, require
from tests.fixtures.simulator import SimulatorHandle
from tests.integration.poller_harness import PollerSetup

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LEADER_TIMEOUT = 3.0
PAGE = 25


@pytest.fixture
def setup(
    kafka_broker: ControllableBroker, simulator: SimulatorHandle, new_topic: NewTopic
) -> PollerSetup:
    return PollerSetup(
        simulator,
        kafka_broker.bootstrap_servers,
        output_topic=new_topic(partitions=3),
        state_topic=new_topic(compacted=True),
        overrides={
            "CONNECTOR_PAGE_SIZE": str(PAGE),
            "CONNECTOR_LEADER_TIMEOUT_SECONDS": str(LEADER_TIMEOUT),
        },
    )


def total(setup: PollerSetup, isolation_level: str = "read_committed") -> int:
    return sum(setup.published_ids(isolation_level).values())


def pages_flowing(setup: PollerSetup) -> Callable[[], bool]:
    """A condition: more than a page was published since it was made."""
    before = total(setup, "read_uncommitted")
    return lambda: total(setup, "read_uncommitted") > before + PAGE


class OpenTransactionProbe:
    """Whether the output topic holds records of a transaction still open: a partition's end as
    read_uncommitted sees it (the high watermark) past its end as read_committed sees it (the
    last stable offset). One request per partition, so a frozen poller is judged within
    milliseconds, while its transaction is still the one that was open at the freeze."""

    def __init__(self, setup: PollerSetup, partitions: int = 3) -> None:
        self._consumers = {
            level: Consumer(
                {
                    "bootstrap.servers": setup.bootstrap_servers,
                    "group.id": f"open-transaction-probe-{uuid.uuid4().hex}",
                    "isolation.level": level,
                    "enable.auto.commit": False,
                }
            )
            for level in ("read_committed", "read_uncommitted")
        }
        self._partitions = [TopicPartition(setup.output_topic, p) for p in range(partitions)]

    def ends(self, level: str) -> list[int]:
        consumer = self._consumers[level]
        return [
            consumer.get_watermark_offsets(tp, timeout=10, cached=False)[1]
            for tp in self._partitions
        ]

    def open_records(self) -> int:
        """Records of open transactions: past the last stable offset, up to the high watermark
        (each result one record: no transaction marker follows an open transaction's)."""
        stable = self.ends("read_committed")
        return sum(
            max(0, high - end)
            for high, end in zip(self.ends("read_uncommitted"), stable, strict=True)
        )

    def close(self) -> None:
        for consumer in self._consumers.values():
            consumer.close()


def freeze_inside_a_transaction(
    poller: ConnectorProcess,
    setup: PollerSetup,
    rng: random.Random,
    tries: int = 200,
    *,
    more_results_than: int = 0,
) -> bool:
    """SIGSTOP the poller at random moments until it is frozen with a transaction open that
    holds more than `more_results_than` results (visible to read_uncommitted only); False if no
    try caught one."""
    probe = OpenTransactionProbe(setup)
    try:
        for _ in range(tries):
            time.sleep(rng.uniform(0.0, 0.2))  # a random moment inside the paging, not a sync
            poller.signal(signal.SIGSTOP)
            if probe.open_records() > more_results_than:
                return True
            poller.signal(signal.SIGCONT)
        return False
    finally:
        probe.close()


def lost_and_repeated(setup: PollerSetup, items: int, isolation_level: str) -> tuple[int, int]:
    """Of `items` seeded, how many a reader at `isolation_level` never saw, and how many extra
    copies it saw."""
    counts = setup.published_ids(isolation_level)
    return items - len(counts), sum(c - 1 for c in counts.values())


def kill_mid_pages(
    setup: PollerSetup,
    tmp_path: Path,
    *,
    kills: int,
    items: int,
    inside_transactions: bool,
    open_results_over: int = 0,
    **settings: str,
) -> int:
    """Seed `items`, then run pollers that are killed with SIGKILL while paging, `kills` times,
    and a last one that finishes. With `inside_transactions` (a broker with transactions) each
    kill lands while a transaction holding more than `open_results_over` results is open;
    returns how many did."""
    setup.simulator.set_knobs(latency=0.1)  # ~200 items/s: every round has pages to kill
    rng = random.Random(7)
    open_at_kill = 0
    # Fresh items before each round, so that no round's poller can have caught up (and closed
    # its last transaction) before it is frozen and killed, however fast the broker.
    per_round = items // (kills + 1)
    for round_number in range(kills):
        setup.simulator.seed(per_round, per_timestamp=4)
        poller = ConnectorProcess(
            ["poll"], {**setup.environ(), **settings}, tmp_path / f"poller-{round_number}.log"
        )
        wait_for(poller.is_leader, what="leadership")
        wait_for(pages_flowing(setup), what="pages flowing")
        if inside_transactions:
            open_at_kill += freeze_inside_a_transaction(
                poller, setup, rng, more_results_than=open_results_over
            )
        else:
            time.sleep(rng.uniform(0.0, 0.3))  # a random moment inside the paging, not a sync
        poller.kill()
    setup.simulator.seed(items - kills * per_round, per_timestamp=4)
    # The last poller is not killed: it only has to finish what the killed ones left, so the
    # API answers at full speed again (at 0.1 s a page it took most of the test's time).
    setup.simulator.set_knobs(latency=0.0)
    last = ConnectorProcess(["poll"], {**setup.environ(), **settings}, tmp_path / "poller-last.log")
    try:
        wait_for(lambda: total(setup) >= items, timeout=120, what="every item published")
    finally:
        assert last.terminate() == 0, last.output()[-3000:]
    return open_at_kill


def test_kill_9_mid_pages_then_restart_loses_and_repeats_nothing(
    kafka_broker: ControllableBroker, setup: PollerSetup, tmp_path: Path
) -> None:
    require(kafka_broker, Capability.TRANSACTIONS)
    items = 2400
    open_at_kill = kill_mid_pages(setup, tmp_path, kills=3, items=items, inside_transactions=True)
    lost, repeated = lost_and_repeated(setup, items, "read_committed")
    print(
        f"\nkill -9 x3 on {kafka_broker.kind}: {open_at_kill} kills inside an open transaction, "
        f"{lost} lost, {repeated} repeated for read_committed"
    )
    # At least one kill provably inside an open transaction (on Kafka: all three); a faster
    # broker's short transactions can slip between random freezes (seen on noida-db: 2 of 3).
    assert open_at_kill >= 1, "no kill hit an open transaction: the test proves nothing"
    assert lost == 0
    assert repeated == 0


def test_kill_9_between_pages_of_one_transaction_publishes_none_of_it_and_repeats_nothing(
    kafka_broker: ControllableBroker, setup: PollerSetup, tmp_path: Path
) -> None:
    """While a backlog drains, pages share a transaction (CONNECTOR_TRANSACTION_SPAN_SECONDS):
    a kill once more than a page of results is in the open transaction (each page's cursor
    with its results) must leave none of them visible and no cursor past them, so the restart
    publishes each of them exactly once."""
    require(kafka_broker, Capability.TRANSACTIONS)
    items = 1600
    open_at_kill = kill_mid_pages(
        setup, tmp_path, kills=2, items=items, inside_transactions=True, open_results_over=PAGE,
        CONNECTOR_TRANSACTION_SPAN_SECONDS="1",  # at most a quarter of the transaction timeout
    )  # fmt: skip
    lost, repeated = lost_and_repeated(setup, items, "read_committed")
    print(
        f"\nkill -9 x2 on {kafka_broker.kind}: {open_at_kill} kills with more than a page in "
        f"the open transaction, {lost} lost, {repeated} repeated for read_committed"
    )
    assert open_at_kill >= 1, "no kill hit a transaction of several pages: it proves nothing"
    assert lost == 0
    assert repeated == 0


def test_kill_9_without_transactional_reads_repeats_at_most_the_open_page_and_loses_nothing(
    kafka_broker: ControllableBroker, setup: PollerSetup, tmp_path: Path
) -> None:
    """What a broker without transactions (the mock) shows everyone, and what read_uncommitted
    shows on any broker: a crash never skips a result. Where transactions are not atomic (the
    mock) results are flushed before the cursor, so a crash repeats at most the page that was
    open; on a broker with transactions, read_uncommitted also shows the aborted results of the
    open transaction (several pages while a backlog drains: CONNECTOR_TRANSACTION_SPAN_SECONDS)."""
    items, kills = 2400, 3
    kill_mid_pages(setup, tmp_path, kills=kills, items=items, inside_transactions=False)
    lost, repeated = lost_and_repeated(setup, items, "read_uncommitted")
    print(
        f"\nkill -9 x{kills} on {kafka_broker.kind}, read_uncommitted: {lost} lost, "
        f"{repeated} repeated (bound without transactions {kills * PAGE})"
    )
    assert lost == 0
    if not kafka_broker.supports(Capability.TRANSACTIONS):
        assert repeated <= kills * PAGE


def test_standby_takes_over_after_the_leader_is_killed(
    kafka_broker: ControllableBroker, setup: PollerSetup, tmp_path: Path
) -> None:
    setup.simulator.seed(200)
    first = ConnectorProcess(["poll"], setup.environ(), tmp_path / "first.log")
    wait_for(first.is_leader, what="first leads")
    second = ConnectorProcess(["poll"], setup.environ(), tmp_path / "second.log")
    try:
        wait_for(second.is_standby, what="second is standby")
        wait_for(lambda: sum(setup.published_ids().values()) >= 200, what="seeded published")
        first.kill()
        killed = time.monotonic()
        wait_for(second.is_leader, timeout=LEADER_TIMEOUT + 20, what="take-over")
        takeover = time.monotonic() - killed
        setup.simulator.set_knobs(processing_delay=0.1)
        setup.create_items(50)
        wait_for(lambda: sum(setup.published_ids().values()) >= 250, what="new leader publishes")
    finally:
        assert second.terminate() == 0, second.output()[-3000:]
    print(
        f"\ntake-over after kill -9 on {kafka_broker.kind}: {takeover:.2f} s "
        f"(CONNECTOR_LEADER_TIMEOUT_SECONDS={LEADER_TIMEOUT:g})"
    )
    assert takeover < LEADER_TIMEOUT + 10
    counts = setup.published_ids("read_uncommitted")
    assert len(counts) == 250, "nothing lost"


def test_a_frozen_leader_cannot_commit_after_its_standby_took_over(
    kafka_broker: ControllableBroker, setup: PollerSetup, tmp_path: Path
) -> None:
    require(kafka_broker, Capability.TRANSACTIONS)
    items = 2000
    setup.simulator.seed(items, per_timestamp=2)
    setup.simulator.set_knobs(latency=0.02)
    first = ConnectorProcess(["poll"], setup.environ(), tmp_path / "first.log")
    second: ConnectorProcess | None = None
    try:
        wait_for(first.is_leader, what="first leads")
        second = ConnectorProcess(["poll"], setup.environ(), tmp_path / "second.log")
        wait_for(second.is_standby, what="second is standby")
        wait_for(lambda: total(setup, "read_uncommitted") > PAGE, what="pages flowing")
        if not freeze_inside_a_transaction(first, setup, random.Random(3)):
            # Without an open transaction at the freeze there is nothing for the woken leader
            # to try to commit: the test could only pass vacuously. Seen on noida-db, whose
            # transactions close faster than a random SIGSTOP lands in them.
            pytest.skip("inconclusive: no freeze landed inside an open transaction")
        wait_for(second.is_leader, timeout=LEADER_TIMEOUT + 20, what="take-over")
        first.signal(signal.SIGCONT)
        # Fenced at its next transaction ("stepping down"), or its group session ended first and
        # its hand-over was refused as fenced (seen): either way standby, having committed nothing.
        wait_for(lambda: any(first.lines("stepping down")) or any(first.lines("leadership lost")),
                 what="the frozen leader steps down")  # fmt: skip
        wait_for(first.is_standby, what="the woken leader standby")
        wait_for(lambda: total(setup) >= items, timeout=120, what="every item published")
    finally:
        first.signal(signal.SIGCONT)
        codes = [first.terminate()] + ([second.terminate()] if second else [])
    assert codes == [0, 0], "a fenced poller steps down, it does not crash"
    counts = setup.published_ids("read_committed")
    assert len(counts) == items
    assert max(counts.values()) == 1, "the woken leader committed nothing"
