"""Bridge between Apache Kafka and Toloka's streaming Apps API."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("toloka-kafka-connector")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = ["__version__"]
