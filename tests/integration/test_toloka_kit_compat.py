"""The public client toloka-kit 1.2.3 creates and reads items against the simulator.

toloka-kit needs old httpx and cattrs, so it lives in `.venv-tolokakit` (see
tests/compat/toloka_kit_check.py for the commands); without that venv these tests skip.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fixtures.simulator import SimulatorHandle

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TOLOKA_KIT_PYTHON = ROOT / ".venv-tolokakit" / "bin" / "python"
CHECK = ROOT / "tests" / "compat" / "toloka_kit_check.py"


@pytest.mark.skipif(
    not TOLOKA_KIT_PYTHON.exists(),
    reason=f"{TOLOKA_KIT_PYTHON} missing: create .venv-tolokakit as {CHECK.name} describes",
)
@pytest.mark.parametrize(
    "token",
    ["plain-dev-key", "A" * 23 + ".apikey.shaped"],
    ids=["sent-as-OAuth", "sent-as-ApiKey"],  # toloka-kit picks the scheme from the token's shape
)
def test_toloka_kit_creates_and_reads_items(
    simulator_factory: Callable[..., SimulatorHandle], token: str
) -> None:
    sim = simulator_factory(api_key=token)
    result = subprocess.run(
        [
            str(TOLOKA_KIT_PYTHON),
            str(CHECK),
            "--url",
            sim.root_url,
            "--token",
            token,
            "--project",
            sim.project_id,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "toloka-kit check: ok" in result.stdout
    assert sim.stats()["items_created"] == 4
    assert sim.stats()["requests_by_status"].keys() == {"200"}
