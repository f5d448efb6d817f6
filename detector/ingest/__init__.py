"""Ingest: wire decoding to columns, interning, the event-time guard, routing to partitions.

The first thing every event meets. Imports only `detector.config`, `detector.errors`
and its own modules; everything else imports it.
"""
