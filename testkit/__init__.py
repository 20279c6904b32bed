"""What the test suites (tests/), the reliability runs (reliability/) and the benchmarks
(benchmarks/) share; none of them imports another, each imports this and `connector`.

Not part of the distribution (pyproject's packages.find includes `connector*` only): it serves
development, from a source checkout.

- `brokers`: the development brokers with the controls only suites use (fault injection on the
  mock cluster, process control of real Kafka; `mock_faults` is the mock's server for them);
- `kafka`: reading a topic back (`read_all`), headers as text, unique names;
- `processes`: `toloka-connector` in a process of its own, as users run it;
- `waiting`: waiting on a condition with a deadline, never a bare sleep;
- `clocks`: the fake `connector.clock.Clock` of unit tests;
- `scenarios`: the chaos and failover runs (`python -m reliability` at full size, `make test`
  in a small variant) and what they share: the workload and the verdict.
"""
