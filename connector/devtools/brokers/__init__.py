"""Development brokers: one module per kind behind `base.Broker`, started by `start.start_broker`.

What each kind can show (its capabilities) and why it cannot show the rest: docs/brokers.md.
Fault injection and process control, which only the test suites and reliability runs use, are
in the test-support package (`testkit.brokers`), not here.
"""
