"""Pictures of deploys: before/after pages per deploy and an index, as files or live.

- `summaries`: window summaries taken from a core as it closes windows;
- `model`: deploys joined with their verdicts, anomalies and smoke checks;
- `svg`, `charts`: the charts, inline SVG written by hand;
- `pages`: the HTML (self-contained, every event-derived string escaped);
- `build`: `detector report` (one pass over events, then the pages);
- `live`: the status page `detector run` serves at `/`.

A driver: may import the core and everything below it; nothing in the core imports it
(the core only calls back the listeners it is given).
"""
