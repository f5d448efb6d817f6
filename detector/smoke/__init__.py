"""Post-deploy smoke checks run by `detector run` itself (an edge: async, IO).

`settings` holds the `[[smoke]]` entries of the pipeline file (plain frozen
data, imported by `detector.config`); `prober` runs them after each deploy
and publishes every result as a `check` event to the checks topic, where the
judge reads them like any other input. Nothing here is imported by the core.
"""
