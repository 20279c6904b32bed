"""Local images for `make compose-e2e`, made from Debian's packages and Maven Central only.

No image registry is needed (none is reachable on this project's machines): a Debian base comes
from `debootstrap` and `docker import`, and every other image is built on it with `docker build`.

- `toloka-local/debian:bookworm`: debootstrap minbase + ca-certificates, from the apt mirror;
- `toloka-local/python:3.11-bookworm`: Debian's Python 3.11 with pip, for python:3.11-slim;
- `toloka-local/python-wheels:3.11-bookworm`: the above + a wheelhouse the host's pip
  downloaded, the Dockerfile's build stage;
- `toloka-local/kafka:4.1.1`: a JRE + Kafka's jars with the official image's paths and start-up,
  for apache/kafka:4.1.1;
- `toloka-local/prometheus:2.42`: Debian's Prometheus in the official image's layout, for
  prom/prometheus;
- `toloka-kafka-connector:e2e-local`: the project's Dockerfile on the two Python images.

Grafana has no Debian package and no reachable registry: no image stands in for it.

    python -m tests.e2e.images            # the Debian base once, the others every time (cached)
    python -m tests.e2e.images --rebuild  # everything again: debootstrap, no layer cache

Needs a running Docker engine; the Debian base needs root and `debootstrap` (Debian's package).
The mirror is the one apt uses (`/etc/apt/sources.list*`), or `DEBIAN_MIRROR`.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Sequence
from pathlib import Path

from connector.devtools.brokers.maven import KAFKA_VERSION, kafka_libs

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent / "images"

DEBIAN = "toloka-local/debian:bookworm"
PYTHON = "toloka-local/python:3.11-bookworm"
PYTHON_WHEELS = "toloka-local/python-wheels:3.11-bookworm"
KAFKA = f"toloka-local/kafka:{KAFKA_VERSION}"
PROMETHEUS = "toloka-local/prometheus:2.42"
CONNECTOR = "toloka-kafka-connector:e2e-local"

DEBIAN_SUITE = "bookworm"
IMAGE_PYTHON_VERSION = "3.11"  # bookworm's; the wheelhouse holds wheels for it, not the host's
IMAGE_GLIBC_MINOR = 36  # bookworm's glibc 2.36: wheels tagged manylinux_2_5 ... 2_36 run there


class ImageBuildError(RuntimeError):
    """A step of building the local images failed; the message says which and why."""


def log(message: str) -> None:
    print(message, flush=True)


# --- the engine ------------------------------------------------------------------------------


def engine_problem() -> str | None:
    """Why no container can run here (no docker CLI, no engine), or None when one can."""
    if shutil.which("docker") is None:
        return "no `docker` command on PATH"
    info = subprocess.run(
        ["docker", "info", "--format", "{{.ServerVersion}}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if info.returncode != 0:
        reason = (info.stderr.strip().splitlines() or ["no answer"])[-1]
        return f"the Docker engine does not answer (`docker info`: {reason})"
    if compose_command() is None:
        return "neither `docker compose` (v2) nor `docker-compose` (1.29+) is installed"
    return None


def compose_command() -> list[str] | None:
    """`docker compose` (v2) where the plugin exists, else `docker-compose` (v1), else None."""
    plugin = subprocess.run(
        ["docker", "compose", "version"], capture_output=True, timeout=30, check=False
    )
    if plugin.returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose") is not None:
        return ["docker-compose"]
    return None


def image_exists(tag: str) -> bool:
    return (
        subprocess.run(
            ["docker", "image", "inspect", tag], capture_output=True, timeout=60, check=False
        ).returncode
        == 0
    )


def image_size_mb(tag: str) -> float:
    size = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Size}}", tag],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    return int(size) / 1e6


def run_logged(argv: Sequence[str], what: str, **kwargs: object) -> None:
    """Run a build command; on failure raise with the end of its output."""
    result = subprocess.run(
        list(argv),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
        **kwargs,  # type: ignore[call-overload]
    )
    if result.returncode != 0:
        tail = "\n".join(result.stdout.splitlines()[-40:])
        raise ImageBuildError(f"{what} failed (exit {result.returncode}):\n{tail}")


def docker_build(
    tag: str,
    context: Path,
    build_args: dict[str, str],
    *,
    fresh: bool = False,
    dockerfile: Path | None = None,
) -> None:
    """`docker build`; unchanged inputs reuse the cached layers, `fresh` refuses them."""
    started = time.monotonic()
    argv = ["docker", "build", "--tag", tag]
    if fresh:
        argv.append("--no-cache")
    if dockerfile is not None:
        argv += ["--file", str(dockerfile)]
    for name, value in build_args.items():
        argv += ["--build-arg", f"{name}={value}"]
    run_logged([*argv, str(context)], f"docker build {tag}", timeout=1800)
    log(f"    {tag}: {time.monotonic() - started:.0f} s ({image_size_mb(tag):.0f} MB)")


# --- the images ------------------------------------------------------------------------------


def apt_mirror() -> str:
    """The Debian mirror apt uses here (first `deb` source), or $DEBIAN_MIRROR."""
    if os.environ.get("DEBIAN_MIRROR"):
        return os.environ["DEBIAN_MIRROR"]
    sources = sorted(Path("/etc/apt").glob("sources.list.d/*.sources"))
    sources += [Path("/etc/apt/sources.list"), *Path("/etc/apt").glob("sources.list.d/*.list")]
    for path in sources:
        if not path.is_file():
            continue
        text = path.read_text()
        # deb822 stanzas ("URIs: ...") and one-line entries ("deb URI suite ...").
        for stanza in text.split("\n\n"):
            uris = re.search(r"^URIs:\s*(\S+)", stanza, re.MULTILINE)
            suites = re.search(r"^Suites:\s*(.+)$", stanza, re.MULTILINE)
            if uris and suites and DEBIAN_SUITE in suites.group(1).split():
                return uris.group(1)
        for line in text.splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "deb" and parts[2] == DEBIAN_SUITE:
                return next(p for p in parts[1:] if not p.startswith("["))
    raise ImageBuildError(
        f"no apt source for Debian {DEBIAN_SUITE} in /etc/apt: set DEBIAN_MIRROR to a mirror URL"
    )


def build_debian_base() -> None:
    """`debootstrap --variant=minbase` into a temporary folder, then `docker import`."""
    if shutil.which("debootstrap") is None:
        raise ImageBuildError("debootstrap is not installed (Debian: apt-get install debootstrap)")
    if os.geteuid() != 0:
        raise ImageBuildError("debootstrap needs root: run `make compose-images` as root")
    mirror = apt_mirror()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="toloka-rootfs-") as rootfs:
        run_logged(
            [
                "debootstrap",
                "--variant=minbase",
                "--include=ca-certificates",
                DEBIAN_SUITE,
                rootfs,
                mirror,
            ],
            f"debootstrap {DEBIAN_SUITE} from {mirror}",
            timeout=1800,
        )
        tar = subprocess.Popen(["tar", "-C", rootfs, "-c", "."], stdout=subprocess.PIPE)
        run_logged(["docker", "import", "-", DEBIAN], "docker import", stdin=tar.stdout)
        if tar.wait() != 0:
            raise ImageBuildError(f"tar of {rootfs} failed")
    log(
        f"    {DEBIAN}: debootstrap from {mirror} and import in "
        f"{time.monotonic() - started:.0f} s ({image_size_mb(DEBIAN):.0f} MB)"
    )


def wheel_requirements() -> list[str]:
    """What pip needs to build the project's wheel: its dependencies and build requirements."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return [*pyproject["project"]["dependencies"], *pyproject["build-system"]["requires"]]


def build_wheelhouse(target: Path) -> None:
    """Wheels of every requirement for the image's Python and platform, downloaded by the host's
    pip (which trusts the host's certificates, unlike a pip inside a build)."""
    machine = platform.machine()
    # pip takes the platforms literally: list every manylinux tag glibc 2.36 runs, and the legacy
    # aliases (manylinux2014 is 2_17, manylinux2010 2_12, manylinux1 2_5).
    tags = [f"manylinux_2_{minor}_{machine}" for minor in range(5, IMAGE_GLIBC_MINOR + 1)]
    tags += [f"manylinux{alias}_{machine}" for alias in ("2014", "2010", "1")]
    run_logged(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--only-binary=:all:",
            "--python-version",
            IMAGE_PYTHON_VERSION,
            "--implementation",
            "cp",
            *(arg for tag in tags for arg in ("--platform", tag)),
            "--dest",
            str(target),
            *wheel_requirements(),
        ],
        "pip download of the wheelhouse",
        timeout=900,
    )


def build_python_wheels(work: Path, fresh: bool) -> None:
    context = work / "python-wheels"
    build_wheelhouse(context / "wheelhouse")
    shutil.copy(HERE / "python" / "wheels.Dockerfile", context / "Dockerfile")
    wheels = len(list((context / "wheelhouse").glob("*.whl")))
    log(f"    wheelhouse: {wheels} wheels for Python {IMAGE_PYTHON_VERSION} ({platform.machine()})")
    docker_build(PYTHON_WHEELS, context, {"BASE_IMAGE": PYTHON}, fresh=fresh)


def build_kafka(work: Path, fresh: bool) -> None:
    context = work / "kafka"
    shutil.copytree(HERE / "kafka", context)
    libs = kafka_libs(with_tools=True)  # Maven Central, cached in ~/.cache/toloka-kafka-connector
    (context / "libs").mkdir()
    jars = sorted(libs.glob("*.jar"))
    for jar in jars:
        shutil.copy(jar, context / "libs" / jar.name)
    log(f"    Kafka {KAFKA_VERSION}: {len(jars)} jars from {libs}")
    docker_build(KAFKA, context, {"BASE_IMAGE": DEBIAN}, fresh=fresh)


def build_all(rebuild: bool = False) -> None:
    """Every local image. The Debian base is made once (or again with `rebuild`); the others are
    built every time, which costs seconds when nothing changed (docker's layer cache), so an
    edited Dockerfile or dependency is never missed. `rebuild` also refuses the cache."""
    if rebuild or not image_exists(DEBIAN):
        build_debian_base()
    else:
        log(f"    {DEBIAN}: present (`make compose-images REBUILD=1` makes it again)")
    docker_build(PYTHON, HERE / "python", {"BASE_IMAGE": DEBIAN}, fresh=rebuild)
    with tempfile.TemporaryDirectory(prefix="toloka-images-") as tmp:
        build_python_wheels(Path(tmp), rebuild)
        build_kafka(Path(tmp), rebuild)
    docker_build(PROMETHEUS, HERE / "prometheus", {"BASE_IMAGE": DEBIAN}, fresh=rebuild)
    docker_build(
        CONNECTOR,
        ROOT,
        {"BASE_IMAGE": PYTHON, "BUILD_IMAGE": PYTHON_WHEELS},
        fresh=rebuild,
        dockerfile=ROOT / "Dockerfile",
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.e2e.images", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--rebuild", action="store_true", help="debootstrap again and build without the cache"
    )
    args = parser.parse_args(argv)
    problem = engine_problem()
    if problem is not None:
        log(f"compose-images: no container engine here: {problem}")
        return 1
    started = time.monotonic()
    try:
        build_all(rebuild=args.rebuild)
    except ImageBuildError as exc:
        log(f"compose-images: {exc}")
        return 1
    log(f"compose-images: done in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
