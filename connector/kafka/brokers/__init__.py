"""One module per broker kind behind `connector.kafka.broker.Broker`, plus their helpers."""
