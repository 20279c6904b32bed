"""Routing by the `toloka-app-project-id` header (`route_by_header`), on an input topic one or
several pipelines read.

A pipeline that sets `route_by_header` reads its input topic in a consumer group of its own
(`routed_group_id`: its offsets and upload intents are its own, so exactly-once uploads hold per
pipeline), whether or not another pipeline reads the topic too: the group follows the setting
alone, so adding or removing a pipeline never moves another to a group without offsets. It takes
the records whose header names its app project. A record another pipeline on the topic takes is
done for this one at once (nothing uploaded, nothing dead-lettered); a record whose header names
none of them, or that has none, is dead-lettered `unrouted` by the first of them in the settings,
and skipped by the others, so it is dead-lettered once. A pipeline without the setting reads in
the shared group and takes every record (the settings refuse it a topic another pipeline reads)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from connector.contract.dead_letters import UNROUTED
from connector.contract.results import APP_PROJECT_ID_HEADER
from connector.kafka.clients import Message
from connector.uploader.decode import Refusal


def routed_group_id(group_id: str, app_project: str) -> str:
    """The consumer group of a pipeline that routes by header."""
    return f"{group_id}.{app_project}"


def input_group_id(group_id: str, app_project: str, *, route_by_header: bool) -> str:
    """The consumer group a pipeline's uploader reads its input topic in: its own when it
    routes by header, the shared `group_id` otherwise."""
    return routed_group_id(group_id, app_project) if route_by_header else group_id


def input_routers(pipelines: Iterable[tuple[str, str, bool]]) -> dict[str, HeaderRouter]:
    """App project → its router, for the pipelines that route by header among `pipelines`
    ((input topic, app project, route_by_header) of each, in settings order)."""
    readers: dict[str, list[str]] = {}
    for topic, project, route_by_header in pipelines:
        if route_by_header:
            readers.setdefault(topic, []).append(project)
    return {
        project: HeaderRouter.for_topic(projects, project)
        for projects in readers.values()
        for project in projects
    }


@dataclass(frozen=True)
class HeaderRouter:
    """Which records of its input topic are the pipeline of `app_project`'s."""

    app_project: str
    sharing: frozenset[str]
    """The app projects of every pipeline reading the topic, this one's included."""
    dead_letters_unrouted: bool
    """This pipeline dead-letters the records no pipeline takes (the first of them does)."""

    @classmethod
    def for_topic(cls, projects: Iterable[str], app_project: str) -> HeaderRouter:
        """The router of `app_project` among the pipelines of `projects`, in settings order."""
        ordered = list(projects)
        return cls(app_project, frozenset(ordered), dead_letters_unrouted=ordered[0] == app_project)

    def route(self, message: Message) -> bool | Refusal:
        """True: this pipeline's record; False: another pipeline's, or an unrouted record the
        first pipeline dead-letters; a Refusal: unrouted, for this pipeline to dead-letter."""
        named = _last_header(message, APP_PROJECT_ID_HEADER)
        if named == self.app_project:
            return True
        if named in self.sharing or not self.dead_letters_unrouted:
            return False
        shown = "no toloka-app-project-id header" if named is None else f"header {named!r}"
        return Refusal(
            UNROUTED,
            f"the input topic is routed by header to the pipelines of app projects "
            f"{', '.join(sorted(self.sharing))}; this record has {shown}, which names none of them",
        )


def _last_header(message: Message, name: str) -> str | None:
    """The last value of header `name` (a record's headers are a list of pairs)."""
    headers = message.headers() or []
    pairs = headers.items() if isinstance(headers, dict) else headers
    found: str | bytes | None = None
    for key, value in pairs:
        if key == name and value is not None:
            found = value
    return found.decode(errors="replace") if isinstance(found, bytes) else found
