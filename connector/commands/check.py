"""`check`: validate the settings, reach Kafka and the API, check the topics and the project.

Prints the resolved settings (secrets masked), then one line per check, `ok` or `FAIL` with the
reason; exits 0 only when everything is well. `--create-topics` creates missing topics (the state
topic compacted) instead of failing on them.
"""

from __future__ import annotations

import argparse

from connector.app.checks import Report, check_api, check_kafka
from connector.app.clients import build_client
from connector.app.registry_checks import check_registry
from connector.commands.catalog import summary
from connector.commands.common import add_settings_arguments, settings_from_args
from connector.commands.exit_codes import EXIT_INTERRUPTED
from connector.config import GROUPS, Settings
from connector.logs import configure_logging
from connector.metrics import Metrics


def run(args: argparse.Namespace) -> int:
    report = Report()
    try:
        return check(args, report)
    except KeyboardInterrupt:
        print(f"interrupted: {report.done} check(s) done (above), the others not run", flush=True)
        return EXIT_INTERRUPTED


def check(args: argparse.Namespace, report: Report) -> int:
    settings = settings_from_args(args)
    configure_logging(settings.runtime.log_format, "ERROR")
    print_settings(settings)
    check_kafka(settings, report, args.create_topics)
    for pipeline in settings.pipelines:
        with build_client(pipeline, Metrics()) as client:
            app = check_api(client, report)
        check_registry(pipeline, report, app)
    if report.failures:
        print(f"{report.failures} check(s) failed")
    else:
        warned = f" ({report.warnings} warning(s) above)" if report.warnings else ""
        print(f"all checks passed{warned}")
    return 0 if not report.failures else 1


def print_settings(settings: Settings) -> None:
    """Every setting (secrets masked); with several pipelines, those every pipeline shares,
    then each pipeline's own."""
    described = [dict(pipeline.describe()) for pipeline in settings.pipelines]
    shared = {k: v for k, v in described[0].items() if all(d.get(k) == v for d in described)}
    print("settings:" if len(described) == 1 else "settings of every pipeline:")
    for variable, value in shared.items():
        print(f"  {variable} = {value}")
    if len(described) == 1:
        return
    for number, rows in enumerate(described, start=1):
        print(f"pipeline #{number}:")
        for variable, value in rows.items():
            if variable not in shared:
                print(f"  {variable} = {value}")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("check", help=summary("check"), description=summary("check"))
    add_settings_arguments(parser, GROUPS)  # it validates and prints every setting
    parser.add_argument(
        "--create-topics",
        action="store_true",
        help="create missing topics (the state topic compacted) instead of failing",
    )
    parser.set_defaults(func=run)
