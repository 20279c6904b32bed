"""Settings that only make sense together are checked together: a bad combination exits 2 with
one line naming both settings (review M4)."""

from __future__ import annotations

import pytest

from connector.config import load_settings
from connector.errors import ConfigError
from connector.settings_groups import CursorWriteSettings, RuntimeSettings, UploaderSettings

REQUIRED = {"TOLOKA_API_KEY": "secret-key-123", "TOLOKA_APP_PROJECT_ID": "proj-1"}


def problems(**environ: str) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        load_settings(environ={**REQUIRED, **environ})
    return raised.value.problems


@pytest.mark.parametrize(
    ("environ", "first", "second"),
    [
        # exit mid-drain: offsets of finished uploads not committed
        (
            {"CONNECTOR_SHUTDOWN_TIMEOUT_SECONDS": "20", "CONNECTOR_DRAIN_TIMEOUT_SECONDS": "30"},
            "CONNECTOR_SHUTDOWN_TIMEOUT_SECONDS",
            "CONNECTOR_DRAIN_TIMEOUT_SECONDS",
        ),
        (
            {"CONNECTOR_SHUTDOWN_TIMEOUT_SECONDS": "30", "CONNECTOR_DRAIN_TIMEOUT_SECONDS": "30"},
            "CONNECTOR_SHUTDOWN_TIMEOUT_SECONDS",
            "CONNECTOR_DRAIN_TIMEOUT_SECONDS",
        ),
        # the pod is killed while a rebalance drains
        (
            {"CONNECTOR_LIVENESS_TIMEOUT_SECONDS": "10"},
            "CONNECTOR_LIVENESS_TIMEOUT_SECONDS",
            "CONNECTOR_DRAIN_TIMEOUT_SECONDS",
        ),
        # a slow commit (or another project's open transaction) hides the leader's heartbeat
        (
            {"CONNECTOR_TRANSACTION_TIMEOUT_SECONDS": "60"},
            "CONNECTOR_TRANSACTION_TIMEOUT_SECONDS",
            "CONNECTOR_LEADER_TIMEOUT_SECONDS",
        ),
        (
            {
                "CONNECTOR_LEADER_TIMEOUT_SECONDS": "10",
                "CONNECTOR_TRANSACTION_TIMEOUT_SECONDS": "6",
            },
            "CONNECTOR_TRANSACTION_TIMEOUT_SECONDS",
            "CONNECTOR_LEADER_TIMEOUT_SECONDS",
        ),
    ],
)
def test_a_bad_combination_is_one_line_naming_both(
    environ: dict[str, str], first: str, second: str
) -> None:
    [line] = problems(**environ)
    assert line.startswith(first), line
    assert second in line, line


def test_the_defaults_agree() -> None:
    settings = load_settings(environ=REQUIRED)
    poller, runtime = settings.poller, settings.runtime
    assert poller.transaction_timeout_seconds <= poller.leader_timeout_seconds / 2
    assert runtime.shutdown_timeout_seconds > settings.uploader.drain_timeout_seconds
    assert runtime.liveness_timeout_seconds > settings.uploader.drain_timeout_seconds


def test_the_transaction_timeout_follows_the_leader_timeout_unless_set() -> None:
    for leader, expected in (("3", 1.5), ("2", 1.0), ("40", 20.0)):
        settings = load_settings(environ={**REQUIRED, "CONNECTOR_LEADER_TIMEOUT_SECONDS": leader})
        assert settings.poller.transaction_timeout_seconds == expected
    documented = {v: d for v, d, _ in CursorWriteSettings.documented()}
    assert documented["CONNECTOR_TRANSACTION_TIMEOUT_SECONDS"] == "7.5"


def test_commands_without_both_groups_are_not_held_to_the_relation() -> None:
    # reset-cursor has no runtime settings; upload has no cursor settings
    load_settings(
        environ={**REQUIRED, "CONNECTOR_DRAIN_TIMEOUT_SECONDS": "100"},
        groups=(UploaderSettings,),
    )
    load_settings(
        environ={**REQUIRED, "CONNECTOR_LIVENESS_TIMEOUT_SECONDS": "1"}, groups=(RuntimeSettings,)
    )


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        # no room for the final commit and the group leave (8 s with Kafka not answering)
        ({"CONNECTOR_SHUTDOWN_TIMEOUT_SECONDS": "8", "CONNECTOR_DRAIN_TIMEOUT_SECONDS": "5"},
         "CONNECTOR_SHUTDOWN_TIMEOUT_SECONDS: 8 must be above 8"),
        # fits the process, not its workers' shorter budgets (12 - 4 s)
        ({"CONNECTOR_SHUTDOWN_TIMEOUT_SECONDS": "12", "CONNECTOR_DRAIN_TIMEOUT_SECONDS": "5",
          "CONNECTOR_WORKERS": "2"},
         "CONNECTOR_SHUTDOWN_TIMEOUT_SECONDS: 12 leaves each worker process (CONNECTOR_WORKERS=2)"),
    ],
)  # fmt: skip
def test_a_shutdown_budget_without_room_for_the_stop_after_the_drain_is_refused(
    environ: dict[str, str], named: str
) -> None:
    [line] = problems(**environ)
    assert line.startswith(named), line
    assert "leaving the group 5s" in line, line


def test_a_shutdown_budget_just_above_the_drain_timeout_stays_valid() -> None:
    """The drain is shortened to fit instead (`stop_budget.drain_seconds`)."""
    for environ in (
        {"CONNECTOR_SHUTDOWN_TIMEOUT_SECONDS": "31", "CONNECTOR_DRAIN_TIMEOUT_SECONDS": "30"},
        {"CONNECTOR_SHUTDOWN_TIMEOUT_SECONDS": "14", "CONNECTOR_WORKERS": "2",
         "CONNECTOR_DRAIN_TIMEOUT_SECONDS": "13"},
    ):  # fmt: skip
        load_settings(environ={**REQUIRED, **environ})
