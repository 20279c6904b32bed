"""The formats that other programs, and other versions of the connector, read: each lives in one
module that its writer and its readers import (contract: /README.md "Records").

- `results`: the headers of an output record;
- `dead_letters`: the headers and reasons of a dead letter (uploader and poller write them;
  `replay-dlq`, `status` and the metrics read them);
- `cursor`: the state topic's records, the cursor and the late window's seen segments (the
  poller writes them, `status` and `reset-cursor` read and replace them);
- `leadership`: who leads an app project's polling, and when a leader counts as alive (the
  standby pollers and `status`/`reset-cursor` judge it by the same rule).

Free of I/O, and below every other package but the base (errors, clock).
"""
