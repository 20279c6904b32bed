"""Development tooling shipped beside the connector, never imported by it: the Kafka-protocol
brokers of `embedded-kafka` and the demo (`brokers`) and their child processes (`processes`).
The simulator (`connector.simulator`) and the demo (`connector.demo`) are tooling too."""
