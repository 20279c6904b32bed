"""The Schema Registry seam: the only code that talks to a Confluent-compatible registry.

`client` builds confluent-kafka's `SchemaRegistryClient` from the SCHEMA_REGISTRY_* settings and
sorts its failures into the connector's error tree; the value formats (`connector.formats`)
receive the client from the roles' wiring, never build one.
"""
