"""A seasonal baseline's settings and its answer.

`BaselineConfig` holds one baseline's settings (frozen, validated on
construction) and the kinds of signal it models; `Expectation` is what a
baseline answers per queried (series, ts). Also: which settings a learnt
state can change to (`_incompatible`), and a config read back from a file.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

from detector.baselines.calendar import DAY_PROFILES, Calendar
from detector.baselines.files import BaselineFormatError

DAY_S = 86400.0


KIND_COUNT = "count"  # counts per window (volume, transactions, error log lines): x level, negative binomial


KIND_SCALE = "scale"  # positive magnitudes (latency quantiles): x level, constant coefficient of variation


KIND_ADDITIVE = "additive"  # rates and metric values: + level, variance per unit weight


KINDS = (KIND_COUNT, KIND_SCALE, KIND_ADDITIVE)


@dataclass(frozen=True)
class BaselineConfig:
    """Settings of one baseline; frozen, validated on construction."""

    kind: str = KIND_COUNT
    slot_s: float = 1800.0  # width of a time-of-day slot; must divide a day
    window_s: float = 10.0  # cadence of updates: the smallest step the forgetting clocks take
    level_half_life_s: float = 1800.0  # how fast the level (and the fallback) follow recent values
    profile_half_life_s: float = 7 * DAY_S  # how fast old days fade out of the time-of-day profile
    noise_half_life_s: float = 6 * 3600.0  # memory of the residual-variance estimate
    neighbour_weight: float = 0.25  # weight of the adjacent slots when pooling a profile estimate
    min_history_s: float = 600.0  # history before any expectation (even the fallback) is ready
    min_obs: int = 30  # observations before any expectation is ready
    seasonal_min_days: float = 1.0  # history before the time-of-day profile is used
    min_slot_obs: float = 30.0  # effective observations near this time of day for the profile to be used
    fallback_std_factor: float = 2.0  # uncertainty inflation while only recent history is known
    min_std: float = 0.0  # floor on the stated predictive std (in the signal's unit)
    timezone: str = "UTC"  # IANA zone whose local time indexes the profile
    day_profiles: str = "none"  # one profile for every day, or: weekday_weekend, day_of_week

    def __post_init__(self) -> None:
        def bad(key: str, expected: str) -> ValueError:
            return ValueError(f"baseline {key} must be {expected} (got {key}={getattr(self, key)!r})")

        if self.kind not in KINDS:
            raise bad("kind", f"one of {', '.join(KINDS)}")
        for key in ("slot_s", "window_s", "level_half_life_s", "profile_half_life_s", "noise_half_life_s"):
            value = getattr(self, key)
            if not (isinstance(value, (int, float)) and np.isfinite(value) and value > 0):
                raise bad(key, "a finite number of seconds > 0")
        slots = DAY_S / self.slot_s
        if abs(slots - round(slots)) > 1e-9 or round(slots) < 4:
            raise bad("slot_s", "a number of seconds that divides a day (86400) into at least 4 slots")
        if not 0 <= self.neighbour_weight <= 1:
            raise bad("neighbour_weight", "between 0 and 1")
        for key in ("min_history_s", "min_obs", "seasonal_min_days", "min_slot_obs", "min_std"):
            value = getattr(self, key)
            if not (np.isfinite(value) and value >= 0):
                raise bad(key, "a finite number >= 0")
        if self.day_profiles not in DAY_PROFILES:
            raise bad("day_profiles", f"one of {', '.join(DAY_PROFILES)}")
        Calendar(self.timezone, self.day_profiles)  # raises naming an unknown zone
        if not (np.isfinite(self.fallback_std_factor) and self.fallback_std_factor >= 1):
            raise bad("fallback_std_factor", "a number >= 1 (the fallback is never more certain than the model)")

    @property
    def slots_per_day(self) -> int:
        return int(round(DAY_S / self.slot_s))

    @property
    def n_slots(self) -> int:
        """Slots of all day profiles: profile p, slot of day s is p * slots_per_day + s."""
        return DAY_PROFILES[self.day_profiles] * self.slots_per_day

    @property
    def multiplicative(self) -> bool:
        return self.kind != KIND_ADDITIVE


@dataclass(frozen=True)
class Expectation:
    """What a baseline expects for each queried (series, ts); all fields are arrays of the query's length.

    `std` is the predictive standard deviation of one window's value: noise plus
    the uncertainty of `mean` (`mean_std`). For `count` baselines, `dispersion`
    is the negative binomial overdispersion phi with std**2 == mean + phi *
    mean**2, so a count test can use NB(mean, phi); it is NaN for other kinds.
    `ready` is False until the series has `min_obs` observations and
    `min_history_s` of history: before that `mean` and `std` are not to be
    judged against (a series never seen has mean NaN and std inf). `seasonal`
    is True where the mean is profile x level (or + level); where it is False
    but `ready` is True, the mean is recent history alone and `std` is inflated
    by `fallback_std_factor`.
    """

    mean: np.ndarray
    std: np.ndarray
    mean_std: np.ndarray
    dispersion: np.ndarray
    n_obs: np.ndarray
    history_s: np.ndarray
    ready: np.ndarray
    seasonal: np.ndarray

    def __len__(self) -> int:
        return len(self.mean)


def _incompatible(old: BaselineConfig, new: BaselineConfig) -> str | None:
    """Why learnt state cannot be carried from `old` to `new` settings, or None if it can
    (one profile for every day becomes each day profile's starting point: `_split_days`)."""
    if old.day_profiles == "none" and new.day_profiles != "none":
        old = BaselineConfig(**{**asdict(old), "day_profiles": new.day_profiles})
    for key in ("kind", "slot_s", "timezone", "day_profiles"):
        if getattr(new, key) != getattr(old, key):
            return f"{key} of a learnt baseline cannot change ({getattr(old, key)!r} -> {getattr(new, key)!r})"
    return None


def _config_from(raw, source: str) -> BaselineConfig:
    known = {f.name for f in fields(BaselineConfig)}
    if not isinstance(raw, dict) or set(raw) - known:
        extra = sorted(set(raw) - known) if isinstance(raw, dict) else raw
        raise BaselineFormatError(f"{source}: baseline config has unknown or malformed entries ({extra!r})")
    try:
        return BaselineConfig(**raw)
    except (TypeError, ValueError) as e:
        raise BaselineFormatError(f"{source}: invalid baseline config: {e}") from None
