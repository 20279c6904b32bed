"""The headers of an output record (contract: "Records", output): which item, its status, its
app project. Dead letters of the poller name their item and project with the same headers."""

from __future__ import annotations

ITEM_ID_HEADER = "toloka-item-id"
STATUS_HEADER = "toloka-status"
APP_PROJECT_ID_HEADER = "toloka-app-project-id"
