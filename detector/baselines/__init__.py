"""Baselines: the seasonal model and its bank (with the warm-start file format), and the
watch that compares every closed window with it. Imports `aggregate`, `ingest`, `stats`.
"""
