"""detector: is the new version working as well as the old one?

A streaming anomaly detector for deploys. The core (windows, sketches,
baselines, tests, judge, log templates) is pure and synchronous; Kafka and
files are edges that feed it batches of decoded columns.
"""

__version__ = "0.1.0"
