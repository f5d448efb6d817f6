"""Kafka driver: topic layout, client settings, and the live loop that feeds the core.

Everything here is an edge (async, IO); decisions stay in the synchronous core.
A driver: may import the core and everything below it; nothing below imports it.
"""
