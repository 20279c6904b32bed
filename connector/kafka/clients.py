"""What the connector uses of confluent-kafka's Message, Consumer and Producer: the seams where
unit tests put fakes (integration tests use the real clients). The signatures are those of
confluent-kafka's own stubs, so the real classes satisfy these protocols."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal, Protocol, overload

from confluent_kafka import KafkaError, TopicPartition

Header = tuple[str, str | bytes | None]
Headers = dict[str, str | bytes | None] | list[Header]
"""Headers as confluent-kafka gives them (a record's) and takes them (`produce`)."""
RebalanceCallback = Callable[[Any, list[TopicPartition]], None]
DeliveryCallback = Callable[[KafkaError | None, Any], None]


class Message(Protocol):
    def topic(self) -> str | None: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...
    def key(self) -> bytes | None: ...
    def value(self) -> bytes | None: ...
    def headers(self) -> Headers | None: ...
    def timestamp(self) -> tuple[int, int]: ...
    def error(self) -> KafkaError | None: ...


class Consumer(Protocol):
    """The uploader's consumer: a group member that commits what is done."""

    def subscribe(
        self,
        topics: list[str],
        on_assign: RebalanceCallback | None = ...,
        on_revoke: RebalanceCallback | None = ...,
        on_lost: RebalanceCallback | None = ...,
    ) -> None: ...
    def consume(self, num_messages: int = ..., timeout: float = ...) -> Sequence[Message]: ...
    def pause(self, partitions: list[TopicPartition]) -> None: ...
    def resume(self, partitions: list[TopicPartition]) -> None: ...
    @overload
    def commit(
        self, *, offsets: list[TopicPartition], asynchronous: Literal[True] = ...
    ) -> None: ...
    @overload
    def commit(
        self, *, offsets: list[TopicPartition], asynchronous: Literal[False]
    ) -> list[TopicPartition]: ...
    def close(self) -> None: ...


class CommittedOffsets(Protocol):
    """What a consumer tells of its group's committed offsets and of a partition's end (the
    consumer that a rebalance callback is handed)."""

    def committed(
        self, partitions: list[TopicPartition], timeout: float = ...
    ) -> list[TopicPartition]: ...
    def get_watermark_offsets(
        self, partition: TopicPartition, timeout: float = ..., cached: bool = ...
    ) -> tuple[int, int] | None: ...


class Producer(Protocol):
    """An idempotent producer (the uploader's dead letters)."""

    def produce(
        self,
        topic: str,
        *,
        value: str | bytes | None = ...,
        key: str | bytes | None = ...,
        headers: Headers | None = ...,
        on_delivery: DeliveryCallback | None = ...,
    ) -> None: ...
    def poll(self, timeout: float = ...) -> int: ...
    def flush(self, timeout: float = ...) -> int: ...


class TransactionalProducer(Protocol):
    """A transactional producer (the poller's, and `reset-cursor`'s)."""

    def init_transactions(self, timeout: float) -> None: ...
    def begin_transaction(self) -> None: ...
    def produce(
        self,
        topic: str,
        *,
        value: bytes | None = None,
        key: bytes | None = None,
        partition: int = -1,
        on_delivery: DeliveryCallback | None = None,
        headers: list[Header] | None = None,
    ) -> None: ...
    def poll(self, timeout: float) -> int: ...
    def flush(self, timeout: float) -> int: ...
    def commit_transaction(self, timeout: float) -> None: ...
    def abort_transaction(self, timeout: float) -> None: ...
