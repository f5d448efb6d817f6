"""Kafka driver: topic layout, client settings, and the live loop that feeds the core.

Everything here is an edge (async, IO); decisions stay in the synchronous core.
"""
