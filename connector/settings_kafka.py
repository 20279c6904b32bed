"""The Kafka connection's settings: the brokers, and every other `KAFKA_<PROPERTY>` for
librdkafka."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import Field, SecretStr

from connector.kafka_properties import OWNED_KAFKA_PROPERTIES, PYTHON_CLIENT_KEYS, kafka_property
from connector.settings_group import SettingsGroup

CLIENT_DEFAULTS: Mapping[str, str] = {
    # A restarting broker can answer a metadata request without itself in it; librdkafka then
    # drops the broker, and a client whose bootstrap brokers were already dropped (librdkafka
    # does once it knows the cluster) is left with none. It bootstraps again only after this
    # long without metadata: 5 minutes by default, during which the uploader's consumer sat with
    # "no broker available" while the process's other clients were back (seen after a broker
    # restart on a TLS listener; its final offset commit then outlasted the shutdown timeout).
    "metadata.recovery.rebootstrap.trigger.ms": "10000",
}
"""librdkafka defaults of the connector's own, for every client; `KAFKA_<PROPERTY>` changes them."""


class KafkaSettings(SettingsGroup):
    """Kafka connection; `properties` holds every other `KAFKA_<PROPERTY>` for librdkafka."""

    prefix: ClassVar[str] = "KAFKA_"
    bootstrap_servers: str = Field("localhost:9092", min_length=1, description="bootstrap servers")
    # SecretStr for all of them: which librdkafka properties are secret is a guess, and a repr
    # of the settings must never show a password.
    properties: dict[str, SecretStr] = Field(
        default_factory=dict,
        description=(
            "any other librdkafka property (KAFKA_SECURITY_PROTOCOL …); those the connector sets "
            "itself are refused (README: Configuration errors)"
        ),
    )

    @classmethod
    def values_from(cls, variables: Mapping[str, str]) -> tuple[dict[str, Any], list[str]]:
        values, problems = super().values_from(variables)
        properties: dict[str, str] = {}
        for name, value in sorted(variables.items()):
            if not name.startswith(cls.prefix) or name == "KAFKA_BOOTSTRAP_SERVERS" or not value:
                continue
            prop = kafka_property(name)
            if prop in OWNED_KAFKA_PROPERTIES:
                why = OWNED_KAFKA_PROPERTIES[prop]
                problems.append(f"{name}: {prop} is set by the connector itself: {why}")
            elif prop in PYTHON_CLIENT_KEYS:
                problems.append(f"{name}: is not a librdkafka property")
            else:
                properties[prop] = value
        values["properties"] = properties
        return values, problems

    @classmethod
    def documented(cls) -> list[tuple[str, str, str]]:
        bootstrap, properties = super().documented()
        return [bootstrap, ("KAFKA_<PROPERTY>", "—", properties[2])]

    def client_config(self) -> dict[str, str]:
        """The librdkafka configuration shared by every client the connector creates."""
        return {
            "bootstrap.servers": self.bootstrap_servers,
            **CLIENT_DEFAULTS,
            **{prop: value.get_secret_value() for prop, value in self.properties.items()},
        }
