"""What a fresh checkout promises: the licence pyproject.toml names, and a `make demo` that
installs only what the connector needs to run."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_license_file_is_the_full_apache_2_text_pyproject_names() -> None:
    assert tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["license"] == (
        "Apache-2.0"
    )
    text = (ROOT / "LICENSE").read_text()
    assert text.split()[:4] == ["Apache", "License", "Version", "2.0,"]
    for part in (
        "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION",
        "9. Accepting Warranty or Additional Liability.",
        "END OF TERMS AND CONDITIONS",
    ):
        assert part in text


def makefile_recipe(target: str) -> tuple[list[str], list[str]]:
    """The prerequisites and recipe lines of `target` in the Makefile."""
    lines = (ROOT / "Makefile").read_text().splitlines()
    [start] = [i for i, line in enumerate(lines) if line.startswith(f"{target}:")]
    prerequisites = lines[start].split(":", 1)[1].split()
    recipe = []
    for line in lines[start + 1 :]:
        if not line.startswith("\t"):
            break
        recipe.append(line.strip())
    return prerequisites, recipe


def test_make_demo_installs_the_connector_without_development_extras() -> None:
    [stamp], _ = makefile_recipe("demo")
    _, recipe = makefile_recipe(stamp)
    installs = [line for line in recipe if "pip install" in line and "-e" in line]
    assert installs == ["$(BIN)/python -m pip install --quiet -e ."]


def test_make_test_still_installs_the_development_extras() -> None:
    _, recipe = makefile_recipe("$(STAMP)")
    assert "$(BIN)/python -m pip install --quiet -e '.[dev]'" in recipe
