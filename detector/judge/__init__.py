"""The judge: every deploy's lifecycle, its rules, blame, root cause and one verdict.

- `verification`: a deploy under verification and its populations (new, stable, before);
- `evidence`: populations on one endpoint table, traffic shares, per-window slices;
- `accumulate`: evidence accumulated from the verification's start (always-valid tests
  from `detector.stats.sequential`), Mantel-Haenszel effects over a rule's span;
- `rules`: which rule holds, with its effect, significance, persistence and action;
- `blame`: whether a change is the deploy's or shared (other services, infrastructure);
- `rootcause`: code, config, data or infra, or unknown, from the evidence;
- `smoke`: post-deploy smoke check results as evidence;
- `judge`: ties them together per closed window and emits anomalies and verdicts.

Imports `stats`, `baselines`, `logs`, `anomaly`, `aggregate`, `ingest`, `config` and
`records`; never a driver.
"""
