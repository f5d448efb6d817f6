"""Streaming metric anomaly detection that stands on its own, outside deploys.

Rooms: `columns` (per-series state arrays), `baseline` (robust level,
detected seasonality, scale, level-shift adoption), `calibration` (learnt
tail probabilities), `context` (the optional contextual novelty test),
`episodes` (one record per departure), `detector` (the tests composed,
vectorised over series), `watch` (the core's component).

Imports `baselines`, `aggregate`, `ingest`, `stats`, `config` and `records`; never the judge or a driver.
"""
