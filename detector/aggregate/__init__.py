"""Aggregate: event-time windows, capped series tables, mergeable latency sketches.

Turns decoded columns into closed-window facts. Imports `ingest` and `config` only.
"""
