"""A local stand-in for the Toloka Apps API (`/api/app/v0`), fast enough for benchmarks, with
a controllable processing clock, fault injection and an admin API under `/_simulator`.

Start it with `toloka-connector simulator` (or `python -m connector.simulator`); see
`connector.simulator.cli` for the options and `connector.simulator.admin` for the admin API.
"""
