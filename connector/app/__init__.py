"""The application assembled from its settings: the one place that builds the API clients, the
roles and their Kafka checks, and knows the connector's topics. The commands (`connector.commands`)
turn argv into a call here; the demo and the benchmarks call it too.

- `clients`: the Toloka API client of a role;
- `topics`: the connector's topics, as `check --create-topics` makes them and the roles need them;
- `roles`: the roles of `run`, `upload` and `poll`, each ready only when Kafka and its topics are;
- `readiness`: that check, around a role;
- `runner`: roles in threads, the health server, signals and the drain;
- `process`: one connector process, from settings to a clean stop;
- `heap`: the garbage collector's settings of a command's process;
- `checks`: what `check` verifies, line by line.
"""
