"""CONNECTOR_WORKERS: the setting, and how one /metrics merges the processes' metrics.

The parent's side of a worker (readiness, liveness, metrics, how it ends) is tested here with
real spawned processes running stand-in bodies (`testkit.fake_workers`); the real workers
(uploads, drain, a killed worker or parent) against a real broker and the simulator in
tests/integration/test_worker_processes.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from connector.app import workers
from connector.app.runner import run_roles
from connector.app.worker_metrics import merge_families, run_registry
from connector.app.workers import WorkerProcess, worker_processes
from connector.cli import main
from connector.config import Settings, load_settings
from connector.errors import ConfigError, RoleFailedError
from connector.health import HealthChecks
from connector.lifecycle import Heartbeat, Readiness, StopRequest
from connector.metrics import Metrics
from connector.metrics.across_processes import GAUGE_ACROSS_PROCESSES
from testkit import fake_workers
from testkit.clocks import FakeClock
from testkit.waiting import wait_for

REQUIRED = {"TOLOKA_API_KEY": "k", "TOLOKA_APP_PROJECT_ID": "p"}


# --- the setting ---------------------------------------------------------------------------


def test_one_uploader_process_unless_asked() -> None:
    settings = load_settings(environ=REQUIRED)
    assert settings.workers.workers == 1
    assert worker_processes(settings, ("uploader", "poller")) == []


def test_the_environment_the_file_and_the_flag_set_it(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("[connector]\nworkers = 3\n")
    assert load_settings(config, environ=REQUIRED).workers.workers == 3
    from_env = load_settings(config, environ={**REQUIRED, "CONNECTOR_WORKERS": "2"})
    assert from_env.workers.workers == 2
    flag = load_settings(config, environ=REQUIRED, overrides={"CONNECTOR_WORKERS": "4"})
    assert flag.workers.workers == 4


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("0", "CONNECTOR_WORKERS: '0' must be >= 1"),
        ("-2", "CONNECTOR_WORKERS: '-2' must be >= 1"),
        ("65", "CONNECTOR_WORKERS: '65' must be <= 64"),
        ("two", "CONNECTOR_WORKERS: 'two' is not an integer"),
        ("1.5", "CONNECTOR_WORKERS: '1.5' is not an integer"),
        ("", "CONNECTOR_WORKERS: '' is not an integer"),
    ],
)
def test_a_bad_value_is_one_problem_naming_the_setting(value: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={**REQUIRED, "CONNECTOR_WORKERS": value})
    assert caught.value.problems == [problem]


@pytest.mark.parametrize("command", ["run", "upload"])
def test_a_bad_workers_flag_exits_2_with_one_line(
    command: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in REQUIRED.items():
        monkeypatch.setenv(name, value)
    assert main([command, "--workers", "0"]) == 2
    assert capsys.readouterr().err == "CONNECTOR_WORKERS: '0' must be >= 1\n"


def test_the_poller_alone_has_no_workers_flag() -> None:
    with pytest.raises(SystemExit) as caught:
        main(["poll", "--workers", "2"])
    assert caught.value.code == 2


def test_a_pipeline_table_cannot_set_it(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[[pipelines]]\napp_project_id = "a"\nworkers = 2\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(config, environ={"TOLOKA_API_KEY": "k"})
    assert len(caught.value.problems) == 1
    assert "workers" in caught.value.problems[0]


def test_workers_are_started_only_beside_an_uploader() -> None:
    settings = load_settings(environ={**REQUIRED, "CONNECTOR_WORKERS": "3"})
    assert [w.name for w in worker_processes(settings, ("uploader",))] == [
        "uploader worker 2",
        "uploader worker 3",
    ]
    assert worker_processes(settings, ("poller",)) == []


# --- one /metrics for every process --------------------------------------------------------


def process_registry(
    consumed: float, in_flight: float, lag: float, ready: float
) -> CollectorRegistry:
    """A registry shaped as a process's: a counter, a histogram, gauges of each aggregation."""
    registry = CollectorRegistry()
    Info("toloka_connector_build", "b", registry=registry).info({"version": "1"})
    Counter("toloka_connector_records_consumed", "c", ["app_project"], registry=registry).labels(
        "p"
    ).inc(consumed)
    histogram = Histogram("toloka_connector_upload_batch_items", "h", buckets=(10, 100),
                          registry=registry)  # fmt: skip
    histogram.observe(consumed)
    Gauge("toloka_connector_upload_requests_in_flight", "g", registry=registry).set(in_flight)
    Gauge("toloka_connector_consumer_lag_messages", "g", ["partition"], registry=registry).labels(
        "0"
    ).set(lag)
    Gauge("toloka_connector_role_ready", "g", ["role"], registry=registry).labels("uploader").set(
        ready
    )
    return registry


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_counters_and_histograms_add_up_and_gauges_follow_their_meaning() -> None:
    parent = process_registry(consumed=5, in_flight=2, lag=7, ready=1)
    worker = process_registry(consumed=50, in_flight=3, lag=4, ready=0)
    shown = samples(run_registry(parent, lambda: [list(worker.collect())]))
    assert shown["toloka_connector_records_consumed_total", (("app_project", "p"),)] == 55
    assert shown["toloka_connector_upload_batch_items_count", ()] == 2
    assert shown["toloka_connector_upload_batch_items_sum", ()] == 55
    assert shown["toloka_connector_upload_batch_items_bucket", (("le", "10.0"),)] == 1
    assert shown["toloka_connector_upload_batch_items_bucket", (("le", "100.0"),)] == 2
    assert shown["toloka_connector_upload_requests_in_flight", ()] == 5  # sum
    assert shown["toloka_connector_consumer_lag_messages", (("partition", "0"),)] == 7  # max
    assert shown["toloka_connector_role_ready", (("role", "uploader"),)] == 0  # min
    assert shown["toloka_connector_build_info", (("version", "1"),)] == 1  # not added up


def test_a_series_only_one_process_has_is_shown_as_it_is() -> None:
    parent = CollectorRegistry()
    worker = CollectorRegistry()
    Gauge("toloka_connector_consumer_lag_messages", "g", ["partition"], registry=parent).labels(
        "0"
    ).set(3)
    Gauge("toloka_connector_consumer_lag_messages", "g", ["partition"], registry=worker).labels(
        "1"
    ).set(9)
    Counter("toloka_connector_items_uploaded", "c", registry=worker).inc(4)
    shown = samples(run_registry(parent, lambda: [list(worker.collect())]))
    assert shown["toloka_connector_consumer_lag_messages", (("partition", "0"),)] == 3
    assert shown["toloka_connector_consumer_lag_messages", (("partition", "1"),)] == 9
    assert shown["toloka_connector_items_uploaded_total", ()] == 4


def test_a_counter_created_time_is_the_earliest() -> None:
    first, second = CollectorRegistry(), CollectorRegistry()
    Counter("c", "c", registry=first)
    Counter("c", "c", registry=second)
    [merged] = merge_families([list(first.collect()), list(second.collect())])
    created = {s.name: s.value for s in merged.samples}["c_created"]
    own = {s.name: s.value for s in next(iter(first.collect())).samples}["c_created"]
    assert created == own  # first was made first: min, not a sum of two timestamps


def test_every_process_shows_the_same_families_as_one() -> None:
    """Merging two processes' registries changes values, never names or label sets."""
    one = Metrics(app_project="p")
    two = Metrics(app_project="p")
    alone = samples(one.registry)
    merged = samples(run_registry(one.registry, lambda: [list(two.registry.collect())]))
    assert merged.keys() == alone.keys()


def test_every_gauge_says_how_processes_combine() -> None:
    """A new gauge must choose sum, max or min by its meaning (connector.metrics)."""
    metrics = Metrics(app_project="p")
    gauges = {family.name for family in metrics.registry.collect() if family.type == "gauge"}
    assert gauges == set(GAUGE_ACROSS_PROCESSES)
    assert set(GAUGE_ACROSS_PROCESSES.values()) <= {"sum", "max", "min"}


@dataclass
class LoopRole:
    """A pipeline's role with a heartbeat on `clock`, as HealthChecks reads one."""

    name: str
    clock: FakeClock
    app_project: str = "p"
    heartbeat: Heartbeat = field(init=False)

    def __post_init__(self) -> None:
        self.heartbeat = Heartbeat(self.name, self.clock)

    def run(self, stop: threading.Event) -> None:  # pragma: no cover - never run here
        raise NotImplementedError

    def readiness(self) -> Readiness:
        return Readiness(True, "fine")


def scraped(checks: HealthChecks) -> list[Metric]:
    """The families of one process's registry as its /metrics (or its worker's reply) has them."""
    checks.refresh_heartbeat_gauges()
    checks.readiness()
    return list(checks.metrics.registry.collect())


def test_a_worker_does_not_hide_the_parents_poller_heartbeat() -> None:
    """`run --workers 2`: the poller runs in the parent alone. The worker shows no poller series,
    so the merged (min) heartbeat is the poller's own: LoopStuck sees a poller stuck for 300 s."""
    clock = FakeClock()
    uploader, poller = LoopRole("uploader", clock), LoopRole("poller", clock)
    parent = HealthChecks(Metrics(app_project="p"), [uploader, poller], clock=clock)
    worker_uploader = LoopRole("uploader", clock)
    worker = HealthChecks(Metrics(app_project="p"), [worker_uploader], clock=clock)
    clock.advance(300)
    uploader.heartbeat.beat()  # the poller's loop last went round 300 s ago
    worker_uploader.heartbeat.beat()
    merged = merge_families([scraped(parent), scraped(worker)])
    heartbeats = {
        sample.labels["role"]: sample.value
        for family in merged
        if family.name == "toloka_connector_loop_heartbeat_timestamp_seconds"
        for sample in family.samples
    }
    assert heartbeats == {"uploader": clock.now, "poller": clock.now - 300}


# --- a worker process seen from the parent (real spawned processes, fake bodies) -------------


class Running:
    """`worker.run(stop)` in a thread, with what it raised."""

    def __init__(self, worker: WorkerProcess) -> None:
        self.worker = worker
        self.stop = threading.Event()
        self.raised: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.worker.run(self.stop)
        except BaseException as exc:  # the test reads it
            self.raised = exc

    def ended(self, timeout: float = 30.0) -> BaseException | None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"{self.worker.name} did not end"
        return self.raised


@pytest.fixture
def settings() -> Settings:
    return load_settings(environ=REQUIRED)


def test_a_worker_is_ready_once_it_says_so_and_hands_over_its_metrics(
    settings: Settings,
) -> None:
    worker = WorkerProcess(settings, 2, target=fake_workers.ready_until_stopped)
    assert worker.readiness() == Readiness(False, "starting")
    running = Running(worker)
    wait_for(lambda: worker.readiness().ready, "the worker to report ready", 60)
    assert worker.readiness().detail.endswith("uploader ready: fake")
    metrics = Metrics(app_project="p")
    assert HealthChecks(metrics, [worker]).readiness()[0]
    # The worker writes its own role gauges (merged on /metrics): no series named after it here.
    shown = samples(metrics.registry)
    assert not [key for key in shown if ("role", "uploader worker 2") in key[1]]
    [[family]] = workers.collect_metrics([worker])
    assert family.samples[0].value == 2  # its own records_consumed, over the pipe
    running.stop.set()
    assert running.ended() is None  # told to stop, it exited 0
    assert not worker.readiness().ready


def test_a_worker_killed_with_sigkill_is_not_ready_and_fails_its_role(settings: Settings) -> None:
    worker = WorkerProcess(settings, 2, target=fake_workers.ready_until_stopped)
    running = Running(worker)
    wait_for(lambda: worker.readiness().ready, "the worker to report ready", 60)
    assert worker.pid is not None
    os.kill(worker.pid, signal.SIGKILL)
    raised = running.ended()
    assert isinstance(raised, RoleFailedError)
    assert str(raised) == "was killed by SIGKILL"
    assert worker.readiness() == Readiness(False, f"pid {worker.pid} exited")


def test_a_failing_worker_fails_its_role_with_its_own_line(settings: Settings) -> None:
    worker = WorkerProcess(settings, 3, target=fake_workers.failing)
    raised = Running(worker).ended()
    assert isinstance(raised, RoleFailedError)
    assert str(raised) == "the API refuses the key (401)"


def test_a_worker_whose_loop_is_stuck_fails_the_parents_liveness(settings: Settings) -> None:
    worker = WorkerProcess(settings, 2, target=fake_workers.stuck_until_stopped)
    running = Running(worker)
    checks = HealthChecks(Metrics(app_project="p"), [worker], stale_after_seconds=60)
    wait_for(lambda: not checks.liveness()[0], "/healthz to see the worker's stuck loop", 60)
    assert "uploader worker 2 loop stuck" in checks.liveness()[1]["message"]
    running.stop.set()
    assert running.ended() is None


FIRST_SPAWN = """
import sys, threading
from connector.app.workers import WorkerProcess
from connector.config import load_settings
from testkit import fake_workers
from testkit.waiting import wait_for

settings = load_settings(environ={"TOLOKA_API_KEY": "k", "TOLOKA_APP_PROJECT_ID": "p"})
workers = [WorkerProcess(settings, n, target=fake_workers.reports_held_signals) for n in (2, 3)]
stop = threading.Event()
threads = []
for worker in workers:  # one after the other, as run_roles starts them
    threads.append(threading.Thread(target=worker.run, args=(stop,)))
    threads[-1].start()
    wait_for(lambda: worker.readiness().ready, "the worker to report", 60)
for worker in workers:
    print(worker.readiness().detail.split(": ", 1)[1])
stop.set()
for thread in threads:
    thread.join(30)
"""


def test_every_worker_starts_with_sigint_and_sigterm_held_the_first_one_too() -> None:
    """The first spawn of a process starts multiprocessing's resource tracker, which unblocks
    SIGINT and SIGTERM in the spawning thread: a fresh interpreter, so it is the first."""
    done = subprocess.run(
        [sys.executable, "-c", FIRST_SPAWN],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=Path(__file__).parents[2],
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["held: SIGINT SIGTERM", "held: SIGINT SIGTERM"]


TWO_PIPELINES = """
[[pipelines]]
app_project_id = "text"
input_topic = "text.items"
output_topic = "text.results"
dlq_topic = "text.dlq"

[[pipelines]]
app_project_id = "images"
input_topic = "images.items"
output_topic = "images.results"
dlq_topic = "images.dlq"
"""


def reported_detail(worker: WorkerProcess) -> str:
    """What a fake worker put in its status message, once it reported; then stopped."""
    running = Running(worker)
    wait_for(lambda: worker.readiness().ready, "the worker to report", 60)
    detail = worker.readiness().detail.split(": ", 1)[1]
    running.stop.set()
    assert running.ended() is None
    return detail


def test_each_worker_is_a_static_member_of_its_own(tmp_path: Path) -> None:
    """KAFKA_GROUP_INSTANCE_ID: the N uploaders share one group, and a member joining with
    another's id fences it out: each worker's id is suffixed, in every pipeline's clients."""
    config = tmp_path / "c.toml"
    config.write_text(TWO_PIPELINES)
    environ = {"TOLOKA_API_KEY": "k", "KAFKA_GROUP_INSTANCE_ID": "pod-0"}
    settings = load_settings(config, environ=environ)
    target = fake_workers.reports_static_member_ids
    assert reported_detail(WorkerProcess(settings, 2, target=target)) == "ids: pod-0-w2 pod-0-w2"
    assert reported_detail(WorkerProcess(settings, 3, target=target)) == "ids: pod-0-w3 pod-0-w3"
    assert [p.kafka.client_config()["group.instance.id"] for p in settings.pipelines] == [
        "pod-0",
        "pod-0",
    ]  # the parent keeps the id it was given


def test_a_worker_without_a_static_member_id_gets_none(settings: Settings) -> None:
    worker = WorkerProcess(settings, 2, target=fake_workers.reports_static_member_ids)
    assert reported_detail(worker) == "ids: None"


def test_a_scrape_asks_every_worker_at_once_and_a_worker_that_exits_ends_the_wait(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One deadline for every worker, not one each after the other (N-1 times the wait); a worker
    that exits meanwhile answers with its last metrics at once."""
    monkeypatch.setattr(workers, "COLLECT_TIMEOUT_SECONDS", 600.0)
    silent = [WorkerProcess(settings, n, target=fake_workers.never_sends_metrics) for n in (2, 3)]
    running = [Running(worker) for worker in silent]

    def says(worker: WorkerProcess, text: str) -> Callable[[], bool]:
        return lambda: worker.readiness().detail.endswith(text)

    for worker in silent:
        wait_for(says(worker, "asked 0"), f"{worker.name} to report", 60)
    scrape = threading.Thread(target=workers.collect_metrics, args=(silent,), daemon=True)
    scrape.start()
    for worker in silent:  # the first still has not answered: the second is asked all the same
        wait_for(says(worker, "asked 1"), f"{worker.name} to be asked for its metrics", 30)
    for each in running:
        each.stop.set()
        assert each.ended() is None
    scrape.join(30)
    assert not scrape.is_alive(), "the scrape still waits for workers that exited"


def test_a_failing_worker_leaves_the_one_line_to_the_command(
    settings: Settings, capfd: pytest.CaptureFixture[str]
) -> None:
    """Exit 1 with one line: the worker's reason reaches the parent, whose command prints it."""
    worker = WorkerProcess(settings, 2, target=fake_workers.real_worker_whose_uploaders_fail)
    raised = Running(worker).ended()
    assert isinstance(raised, RoleFailedError)
    assert str(raised) == "the API refuses the key (401)"
    assert "toloka-connector" not in capfd.readouterr().err


def test_a_worker_silent_while_its_loops_waited_fails_the_parents_liveness(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A loop waiting on a dependency counts as alive only while the worker says so: once it
    stops reporting, its heartbeat ages from its last report."""
    monkeypatch.setattr(workers, "SILENT_AFTER_SECONDS", 1.0)
    worker = WorkerProcess(settings, 2, target=fake_workers.waits_then_goes_silent)
    running = Running(worker)
    checks = HealthChecks(Metrics(app_project="p"), [worker], stale_after_seconds=2)
    wait_for(lambda: worker.readiness().ready, "the worker to report", 60)
    assert checks.liveness()[0]
    wait_for(lambda: not checks.liveness()[0], "/healthz to see the silent worker", 30)
    assert "uploader worker 2 loop stuck" in checks.liveness()[1]["message"]
    running.stop.set()
    assert running.ended() is None


def test_a_worker_killed_by_a_signal_without_a_name_fails_its_role_naming_it(
    settings: Settings,
) -> None:
    worker = WorkerProcess(settings, 2, target=fake_workers.killed_by_a_real_time_signal)
    raised = Running(worker).ended()
    assert isinstance(raised, RoleFailedError)
    assert str(raised) == f"was killed by signal {signal.SIGRTMIN + 6}"


def test_a_worker_gets_less_shutdown_time_than_its_parent_and_drains_within_it() -> None:
    parent = load_settings(environ={**REQUIRED, "CONNECTOR_SHUTDOWN_TIMEOUT_SECONDS": "45",
                                    "CONNECTOR_DRAIN_TIMEOUT_SECONDS": "30"})  # fmt: skip
    worker = workers.worker_settings(parent, 2)
    assert worker.runtime.shutdown_timeout_seconds == 40  # the margin: 5 s
    assert worker.uploader.drain_timeout_seconds == pytest.approx(30 * 40 / 45)
    short = load_settings(environ={**REQUIRED, "CONNECTOR_SHUTDOWN_TIMEOUT_SECONDS": "13.5",
                                   "CONNECTOR_DRAIN_TIMEOUT_SECONDS": "3",
                                   "CONNECTOR_WORKERS": "2"})  # fmt: skip
    assert workers.worker_settings(short, 2).runtime.shutdown_timeout_seconds == 9  # a third
    assert workers.worker_settings(short, 2).uploader.drain_timeout_seconds == 2
    assert parent.runtime.shutdown_timeout_seconds == 45  # the parent keeps its own


def run_parent_of(
    worker: WorkerProcess, budget: float, stop: threading.Event
) -> tuple[threading.Thread, list[BaseException | None]]:
    """`run_roles` of the parent over `worker` on a thread (not the main one: the test process
    keeps its signal handlers); what it raised (None: nothing) lands in the list."""
    ended: list[BaseException | None] = []

    def run_parent() -> None:
        try:
            run_roles([worker], Metrics(app_project="p"), metrics_host="127.0.0.1",
                      metrics_port=0, shutdown_timeout_seconds=budget, stop=stop)  # fmt: skip
        except BaseException as raised:
            ended.append(raised)
        else:
            ended.append(None)

    parent = threading.Thread(target=run_parent, daemon=True)
    parent.start()
    return parent, ended


def test_a_worker_that_overruns_its_drain_is_named_by_its_own_line_not_killed_late() -> None:
    """Both budgets used to be the same: a worker whose drain took nearly all of it was still
    running when the parent's ran out, so the parent reported it late and killed it, and the
    worker's own account was lost. Its budget is shorter now: the worker's runner gives up on
    the overrunning role first, the worker exits 1 saying which, and the parent reports that."""
    settings = load_settings(environ={**REQUIRED, "CONNECTOR_SHUTDOWN_TIMEOUT_SECONDS": "9",
                                      "CONNECTOR_DRAIN_TIMEOUT_SECONDS": "1"})  # fmt: skip
    worker = WorkerProcess(settings, 2, target=fake_workers.real_worker_whose_drain_overruns)
    stop = threading.Event()
    parent, ended = run_parent_of(worker, 9, stop)
    wait_for(lambda: worker.readiness().ready, "the worker to report ready", 60)
    stop.set()
    parent.join(30)
    assert not parent.is_alive(), "the parent did not return"
    [raised] = ended
    assert isinstance(raised, RoleFailedError)
    assert str(raised) == "uploader worker 2: uploader: did not finish draining in time"
    assert worker.readiness().detail == f"pid {worker.pid} exited"  # by itself, not killed
    worker.close()


def test_a_workers_stop_counts_from_when_the_parents_was_requested() -> None:
    """A worker's budget counts from the parent's request (the signal), not from when the
    worker heard of it (the parent's loop notices a signal up to half a second late, then its
    message crosses the pipe): the STOP message carries the request's time, which the worker's
    roles see as their stop's (the monotonic clock is the machine's)."""
    settings = load_settings(environ={**REQUIRED, "CONNECTOR_SHUTDOWN_TIMEOUT_SECONDS": "20",
                                      "CONNECTOR_DRAIN_TIMEOUT_SECONDS": "1"})  # fmt: skip
    says_when = fake_workers.real_worker_saying_when_the_stop_was_requested
    worker = WorkerProcess(settings, 2, target=says_when)
    stop = StopRequest()
    parent, ended = run_parent_of(worker, 20, stop)
    try:
        wait_for(lambda: worker.readiness().ready, "the worker to report ready", 60)
        requested_at = time.monotonic() - 3.0  # a signal that came while the parent was busy
        stop.set(at=requested_at)
        parent.join(30)
        assert not parent.is_alive(), "the parent did not return"
    finally:
        worker.close()
    [raised] = ended
    assert str(raised) == f"uploader worker 2: uploader: stop requested at {requested_at!r}"
