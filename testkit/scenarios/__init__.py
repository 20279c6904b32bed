"""Runs of the whole pipeline under faults, judged by a read_committed reader: `chaos` (kills,
broker and API faults), `failover` (the leading poller killed). `python -m reliability` runs them
at full size; `make test` runs small variants (tests/integration/test_chaos_small.py,
test_failover_timing.py). `workload` produces the records, `verdict` judges the run, `setup` is
what they share."""
