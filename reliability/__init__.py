"""Reliability runs of the connector: chaos scenarios, hostile input at volume, failover timing.

`python -m reliability` (what `make chaos` runs) executes the scenarios against real processes
(`toloka-connector run`, the simulator, a real Kafka broker or the librdkafka mock cluster) and
writes the figures to `docs/reliability.md`. The pieces are importable so that a small scenario
runs inside `make test` (tests/integration/test_chaos_small.py).
"""
