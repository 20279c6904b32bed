"""What the operations commands (`status`, `reset-cursor`, `replay-dlq`) do, apart from argv.

Layout: `kafka_reads` (partitions, watermarks, committed offsets, reading a topic to where it
ended), `leader` (is a poller active, judged from the cursor record), `status` (gathering and
rendering the connector's state), `cursor_moves` (the cursor each `reset-cursor` move writes),
`replay` (dead letters back to the input topic).
"""
