"""The fleet view: per-window summaries of every service, shared between sidecars.

A core summarises each closed window of the services it owns (`summary`),
publishes one message per (partition, window), and reads every partition's
messages into a bounded `FleetView` (`view`). Blame reads other services'
deviations from the view, so it sees the same fleet at any partition count.
"""
