"""A small Confluent-compatible Schema Registry over HTTP, for development and tests.

A real registry is a Java service that is neither on PyPI nor resolvable from Maven Central with
its dependencies here, so the connector's formats are tested against this one, written from the
registry's public API reference (subjects, versions, ids, compatibility levels). `store` holds the
state and the rules, `compatibility` the checks, `server` the HTTP side (basic auth, TLS).
"""
