"""Which pipeline's lane takes each input record: by its topic, and on a topic that pipelines
with `route_by_header` share, by its `toloka-app-project-id` header.

The process reads every pipeline's input topic with one consumer in the one group
CONNECTOR_GROUP_ID (`connector.uploader.loop`), so a shared topic is read once. A pipeline
without `route_by_header` has its topic to itself (the settings refuse it a topic another
pipeline reads) and takes every record of it. On a routed topic, a record goes to the pipeline
its header names; a record whose header names none of the topic's pipelines, or that has none,
goes to the first of them in the settings as a `unrouted` refusal: it is dead-lettered there,
once. A routed pipeline alone on its topic routes too: a record naming another project is
dead-lettered, not uploaded.

Earlier versions read a routed pipeline's topic in a group of its own, `<group>.<app project>`
(`routed_group_id`); `connector.uploader.migration` reads those groups' offsets at an
assignment, so that the upgrade uploads nothing twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from connector.contract.dead_letters import UNROUTED
from connector.contract.results import APP_PROJECT_ID_HEADER
from connector.kafka.clients import Message
from connector.uploader.decode import Refusal

LaneT = TypeVar("LaneT")

Route = Callable[[Message], tuple[LaneT, Refusal | None]]
"""A record of one topic → the lane that takes it, and the refusal it is dead-lettered with
there (None: its lane uploads it)."""


def routed_group_id(group_id: str, app_project: str) -> str:
    """The consumer group a pipeline that routed by header read its input topic in, before the
    process read every topic in one group (see `connector.uploader.migration`)."""
    return f"{group_id}.{app_project}"


@dataclass(frozen=True)
class Reader(Generic[LaneT]):
    """One pipeline's input: its topic, app project, whether it routes by header, its lane."""

    topic: str
    app_project: str
    route_by_header: bool
    lane: LaneT


def input_routes(readers: Sequence[Reader[LaneT]]) -> dict[str, Route[LaneT]]:
    """Input topic → how its records are routed, for the pipelines `readers` (settings order)."""
    by_topic: dict[str, list[Reader[LaneT]]] = {}
    for reader in readers:
        by_topic.setdefault(reader.topic, []).append(reader)
    return {
        topic: HeaderRoute(sharing) if sharing[0].route_by_header else _only(sharing[0].lane)
        for topic, sharing in by_topic.items()
    }


def _only(lane: LaneT) -> Route[LaneT]:
    return _SoleRoute(lane)


class _SoleRoute(Generic[LaneT]):
    """Every record of the topic to its one pipeline's lane."""

    def __init__(self, lane: LaneT) -> None:
        self.taken: tuple[LaneT, Refusal | None] = (lane, None)

    def __call__(self, _message: Message) -> tuple[LaneT, Refusal | None]:
        return self.taken


def route_runs(
    route: Route[LaneT], messages: Sequence[Message]
) -> Iterator[tuple[LaneT, Refusal | None, int, int]]:
    """`messages` (of one topic) as runs of consecutive ones that `route` sends to one lane with
    one refusal: (lane, refusal, start, stop). A topic of one pipeline is one run, its records'
    headers unread; on a routed topic each refused record is a run of its own."""
    if isinstance(route, _SoleRoute):
        lane, refusal = route.taken
        yield lane, refusal, 0, len(messages)
        return
    start, current = 0, None
    for index, message in enumerate(messages):
        taken = route(message)
        if taken is not current:  # a lane's (lane, None) is one tuple; each refusal a new one
            if current is not None:
                yield current[0], current[1], start, index
            start, current = index, taken
    if current is not None:
        yield current[0], current[1], start, len(messages)


class HeaderRoute(Generic[LaneT]):
    """The records of a topic routed by header, among the pipelines `sharing` it."""

    def __init__(self, sharing: Iterable[Reader[LaneT]]) -> None:
        readers = list(sharing)
        self._taken: dict[str, tuple[LaneT, Refusal | None]] = {
            reader.app_project: (reader.lane, None) for reader in readers
        }
        self._first = readers[0].lane
        self._projects = ", ".join(sorted(self._taken))

    def __call__(self, message: Message) -> tuple[LaneT, Refusal | None]:
        named = _last_header(message, APP_PROJECT_ID_HEADER)
        taken = None if named is None else self._taken.get(named)
        if taken is not None:
            return taken
        shown = "no toloka-app-project-id header" if named is None else f"header {named!r}"
        return self._first, Refusal(
            UNROUTED,
            f"the input topic is routed by header to the pipelines of app projects "
            f"{self._projects}; this record has {shown}, which names none of them",
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
