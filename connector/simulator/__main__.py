"""`python -m connector.simulator`: the `simulator` command without the rest of the CLI."""

import argparse
import sys

from connector.simulator.cli import DESCRIPTION, add_arguments, run

parser = argparse.ArgumentParser(
    prog="python -m connector.simulator",
    description=DESCRIPTION,
    formatter_class=argparse.RawDescriptionHelpFormatter,
)
add_arguments(parser)
sys.exit(run(parser.parse_args()))
