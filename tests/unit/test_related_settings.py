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
