"""Toloka Apps API: wire models, the HTTP client, and the local simulator."""
