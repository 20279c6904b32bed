"""The scenarios; each takes the shared `Bench` and returns a `ScenarioResult`."""
