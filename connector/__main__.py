"""`python -m connector` is the same as the `toloka-connector` console script."""

import sys

from connector.cli import main

sys.exit(main())
