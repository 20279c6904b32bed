"""Does the real public client, toloka-kit 1.2.3, work against the simulator unchanged?

Runs in its own venv (toloka-kit pins old httpx and cattrs):
    python3.11 -m venv .venv-tolokakit
    .venv-tolokakit/bin/pip install "toloka-kit==1.2.3" "httpx<0.28" "cattrs>=22,<23"
    .venv-tolokakit/bin/python tests/compat/toloka_kit_check.py \\
        --url http://127.0.0.1:PORT --token KEY --project PROJECT_ID
`--url` is the simulator's root (toloka-kit appends `/api/app/v0/...` itself). Exits 0 when
every call worked and returned what the simulator stored, 1 otherwise.
"""

from __future__ import annotations

import argparse
import datetime
import sys

from toloka.client import TolokaClient  # type: ignore[import-not-found]
from toloka.client.app import AppItem  # type: ignore[import-not-found]

TEXTS = ["Kate likes dogs.", "I hate honey.", "The weather is fine."]


def check(client: TolokaClient, project_id: str) -> list[str]:
    """Every call toloka-kit offers for app items; returns what went wrong."""
    problems: list[str] = []
    project = client.get_app_project(project_id)
    app = client.get_app(project.app_id)
    if set(app.input_spec) != {"id", "text"} or not app.input_spec["text"].required:
        problems.append(f"get_app: unexpected input_spec {app.input_spec}")
    items = [{"id": str(n), "text": text} for n, text in enumerate(TEXTS)]
    ids = client.create_app_items(app_project_id=project_id, items=items)
    if len(ids) != len(items):
        problems.append(f"create_app_items returned {ids}")
    single = client.create_app_item(app_project_id=project_id, input_data={"text": "one more"})
    for item_id, sent in [*zip(ids, items, strict=True), (single.id, {"text": "one more"})]:
        item = client.get_app_item(app_project_id=project_id, app_item_id=item_id)
        if item.input_data != sent or item.status != AppItem.Status.COMPLETED:
            problems.append(f"get_app_item {item_id}: {item.status} {item.input_data}")
        if item.finished_at is None or item.finished_at.tzinfo is None or not item.output_data:
            problems.append(f"get_app_item {item_id}: finished_at/output_data missing")
    listed = list(client.get_app_items(app_project_id=project_id, batch_size=2))
    if sorted(item.id for item in listed) != sorted([*ids, single.id]):
        problems.append(f"get_app_items listed {[item.id for item in listed]}")
    since = datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=1)
    found = client.find_app_items(
        app_project_id=project_id, sort="-finished", created_gte=since, status="COMPLETED", limit=2
    )
    if len(found.content) != 2 or not found.has_more:
        problems.append(f"find_app_items: {len(found.content)} items, has_more {found.has_more}")
    after = client.find_app_items(app_project_id=project_id, sort="finished", after_id=ids[0])
    if [item.id for item in after.content] != [*ids[1:], single.id]:
        problems.append(f"find_app_items after_id: {[item.id for item in after.content]}")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", required=True, help="simulator root, without /api/app/v0")
    parser.add_argument("--token", required=True)
    parser.add_argument("--project", required=True)
    args = parser.parse_args()
    client = TolokaClient(args.token, url=args.url, retries=0, timeout=10.0)
    problems = check(client, args.project)
    for problem in problems:
        print(f"FAIL {problem}", file=sys.stderr)
    print("toloka-kit check:", "failed" if problems else "ok")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
