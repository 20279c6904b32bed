"""Value formats beside the roles: input record bytes → item, finished item → output bytes.

`json` is the uploader's and the poller's own path (`uploader.decode`, `poller.publisher`); the
registry formats (`avro`, `protobuf`, `json_schema`, in Confluent's wire format: magic byte 0, a
4-byte schema id) live here: `decoding` reads an input record with its writer's schema,
`encoding` writes a result with a schema derived from the app's specs (`shape` and one module per
schema language: `avro_schema`, `json_schema`, `protobuf_schema`). The registry itself is reached
only through `connector.schema_registry`. The mapping is documented in docs/formats.md.
"""
