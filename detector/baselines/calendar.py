"""Event time -> local calendar for the seasonal profiles: which day profile, and the
seconds since local midnight, in an IANA time zone.

People keep local time: the morning ramp starts at 08:00 in Berlin in winter
and in summer, which is 07:00 UTC one half of the year and 06:00 UTC the
other. A profile indexed by UTC time of day would expect the ramp an hour
off for months after each daylight-saving change; indexed by local time it
is where it was. Weekends look different from weekdays, so each kind of day
has its own profile.

    >>> cal = Calendar("Europe/Berlin", "weekday_weekend")
    >>> winter, summer = 1767250800.0, 1782885600.0  # 2026-01-01 07:00 UTC, 2026-07-01 06:00 UTC
    >>> [int(s) for s in cal.seconds_of_day([winter, summer])]
    [28800, 28800]
"""

from __future__ import annotations

from datetime import datetime, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np

from detector import config

DAY_S = 86400.0
# day_profiles -> number of profiles; a day's profile index is given by `Calendar.split`.
DAY_PROFILES = dict(zip(config.DAY_PROFILES, (1, 2, 7)))
_EPOCH_WEEKDAY = 3  # 1970-01-01 was a Thursday (Monday = 0)


@lru_cache(maxsize=64)
def zone(name: str) -> ZoneInfo:
    """The IANA zone `name`; ValueError naming it when the system's tz database lacks it."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise ValueError(f"unknown IANA time zone {name!r} ({e}); use a name like 'UTC' or 'Europe/Berlin'") from None


class Calendar:
    def __init__(self, timezone_name: str = "UTC", day_profiles: str = "none") -> None:
        if day_profiles not in DAY_PROFILES:
            raise ValueError(f"day_profiles must be one of {', '.join(DAY_PROFILES)} (got {day_profiles!r})")
        self.utc = timezone_name == "UTC"
        self.zone = zone(timezone_name)
        self.day_profiles = day_profiles
        self.n_profiles = DAY_PROFILES[day_profiles]

    def local(self, ts) -> np.ndarray:
        """Local wall-clock seconds since the epoch (ts plus the zone's UTC offset at ts)."""
        ts = np.asarray(ts, dtype=np.float64)
        if self.utc or ts.size == 0:
            return ts
        # Windows share their end times: one offset lookup per distinct second.
        secs, inverse = np.unique(np.floor(ts), return_inverse=True)
        offsets = np.array([datetime.fromtimestamp(s, timezone.utc).astimezone(self.zone).utcoffset().total_seconds()
                            for s in secs.tolist()])
        return ts + offsets[inverse.reshape(ts.shape)]

    def seconds_of_day(self, ts) -> np.ndarray:
        return np.mod(self.local(ts), DAY_S)

    def split(self, ts) -> tuple[np.ndarray, np.ndarray]:
        """(profile index, local seconds since midnight) of each ts."""
        local = self.local(ts)
        day = np.floor(local / DAY_S)
        tod = local - day * DAY_S
        if self.n_profiles == 1:
            return np.zeros(np.shape(local), dtype=np.int64), tod
        weekday = (day.astype(np.int64) + _EPOCH_WEEKDAY) % 7
        if self.n_profiles == 7:
            return weekday, tod
        return (weekday >= 5).astype(np.int64), tod
