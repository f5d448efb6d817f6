"""Settings of log template mining and of the log tests, validated at construction.

`LogSettings` is frozen and plain: whoever reads the pipeline file builds it
(window_s from the windows width, the caps from the logs section). Every
limit that bounds memory or the work per line is here.
"""

from __future__ import annotations

from dataclasses import dataclass

from detector.ingest.columns import LEVEL_ERROR, LEVEL_FATAL, LEVEL_INFO


@dataclass(frozen=True)
class LogSettings:
    # Windows: must equal the core's window width so template counts line up.
    window_s: float = 10.0
    # Closed windows kept: must cover baseline_s plus the verification period, or
    # late in a long verification the look-back since the deploy is cut short.
    history_s: float = 3600.0
    baseline_s: float = 900.0  # pre-deploy period a template's error rate is compared against

    # Bounds on memory and on work per line.
    max_templates_per_service: int = 1_000  # past it, unmatched lines count into the service's overflow template
    max_message_chars: int = 2_000  # a message is cut to this before masking
    max_tokens: int = 48  # and to this many tokens before mining
    max_clusters_per_leaf: int = 50  # the miner compares a line with at most this many templates
    cache_entries_per_service: int = 4_096  # masked message -> template memo, per generation (two kept)

    # Template mining (miner.py). The templates are persisted with the words
    # they remember, so these must not change across a restart from a snapshot.
    sim_th: float = 0.6  # share of a line's tokens that must match a template's
    word_variants: int = 4  # distinct words at one position before it becomes <*>

    # log_novelty: a template first seen after the deploy, emitted by the new version.
    novelty_grace_s: float = 300.0  # the new version's own lines this long before the deploy keep a template new
    novelty_min_count: int = 3  # lines at WARN or above since the deploy
    novelty_info_min_count: int = 50  # or this many lines at any level ...
    novelty_info_min_share: float = 0.05  # ... making up at least this share of the version's lines
    novelty_critical_count: int = 20  # ERROR/FATAL lines since the deploy for severity critical
    novelty_max_findings: int = 20  # per deploy and window; the most frequent are kept
    min_baseline_lines: int = 100  # the service must have logged this much before the deploy

    # log_errors: a known template's error-level count against its pre-deploy rate.
    errors_min_level: int = LEVEL_ERROR
    errors_p_value: float = 1e-4
    errors_min_count: int = 5
    errors_min_ratio: float = 2.0  # observed / expected
    errors_critical_ratio: float = 10.0
    shared_p_value: float = 0.01  # a rise elsewhere at this level makes the finding shared

    def __post_init__(self) -> None:
        positive = ("window_s", "history_s", "baseline_s")
        at_least_one = ("max_templates_per_service", "max_message_chars", "max_tokens", "max_clusters_per_leaf",
                        "cache_entries_per_service", "novelty_min_count", "novelty_info_min_count",
                        "novelty_critical_count", "novelty_max_findings", "min_baseline_lines", "errors_min_count")
        for name in positive:
            _require(getattr(self, name) > 0, name, getattr(self, name), "a number of seconds > 0")
        _require(self.novelty_grace_s >= 0, "novelty_grace_s", self.novelty_grace_s, "a number of seconds >= 0")
        for name in at_least_one:
            v = getattr(self, name)
            _require(isinstance(v, int) and v >= 1, name, v, "an integer >= 1")
        _require(self.history_s >= self.baseline_s + self.window_s, "history_s", self.history_s,
                 f"at least baseline_s + window_s = {self.baseline_s + self.window_s}")
        _require(0 < self.sim_th <= 1, "sim_th", self.sim_th, "a similarity in (0, 1]")
        _require(isinstance(self.word_variants, int) and self.word_variants >= 2, "word_variants",
                 self.word_variants, "an integer >= 2")
        _require(0 <= self.novelty_info_min_share <= 1, "novelty_info_min_share", self.novelty_info_min_share,
                 "a share in [0, 1]")
        _require(LEVEL_INFO <= self.errors_min_level <= LEVEL_FATAL, "errors_min_level", self.errors_min_level,
                 f"a level code {LEVEL_INFO}-{LEVEL_FATAL}")
        for name in ("errors_p_value", "shared_p_value"):
            _require(0 < getattr(self, name) < 0.5, name, getattr(self, name), "a p-value in (0, 0.5)")
        _require(self.errors_min_ratio >= 1, "errors_min_ratio", self.errors_min_ratio, "a ratio >= 1")
        _require(self.errors_critical_ratio >= self.errors_min_ratio, "errors_critical_ratio",
                 self.errors_critical_ratio, f"a ratio >= errors_min_ratio ({self.errors_min_ratio})")

    def miner_params(self) -> dict:
        """The parameters persisted templates depend on."""
        return {"sim_th": self.sim_th, "word_variants": self.word_variants}


def _require(ok: bool, name: str, value, expected: str) -> None:
    if not ok:
        raise ValueError(f"log setting {name} must be {expected} (got {name}={value!r})")
