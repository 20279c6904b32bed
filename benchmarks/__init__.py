"""Benchmarks of the connector: `python -m benchmarks [--broker kafka|mock] [--quick]`.

Runs eight scenarios against a development broker and the simulator, each in its own process,
and writes `docs/benchmarks.md` (the table, the machine, the command, the profiles) and
`docs/benchmarks.json` (the raw numbers). Every figure sits next to a baseline measured in the
same run, as a ratio, because timings drift on a shared machine. See `benchmarks.cli`.
"""
