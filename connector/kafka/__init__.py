"""Kafka seams: topic administration (`admin`) and development brokers (`embedded`)."""
