"""`python -m connector.devtools.registry [--port N]`: serve the registry simulator until Ctrl-C;
prints its URL (use it as SCHEMA_REGISTRY_URL)."""

from __future__ import annotations

import argparse
import threading

from connector.devtools.registry.server import RegistrySimulator


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m connector.devtools.registry")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    args = parser.parse_args()
    with RegistrySimulator(host=args.host, port=args.port) as registry:
        print(registry.url, flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            return


if __name__ == "__main__":
    main()
