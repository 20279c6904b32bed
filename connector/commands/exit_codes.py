"""The exit codes of `toloka-connector` (contract: "Commands"). The command line (`connector.cli`)
turns the error tree into them; a one-shot command returns EXIT_INTERRUPTED itself after saying
what it had done when Ctrl-C ended it."""

from __future__ import annotations

EXIT_OK = 0
EXIT_FATAL = 1
EXIT_CONFIG = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for a command Ctrl-C ended
