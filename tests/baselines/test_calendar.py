"""Seasonal profiles in local time, per kind of day (`[baselines] timezone`, `day_profiles`).

People keep local time: a morning ramp at 08:00 in Berlin is at 07:00 UTC in
winter and 06:00 UTC in summer. A profile indexed by local time still expects
it at 08:00 after the daylight-saving change; one indexed by UTC expects it an
hour late. Weekends get their own profile.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from detector.baselines import BaselineBank
from detector.baselines.calendar import Calendar
from detector.baselines.files import BaselineFormatError
from detector.baselines.model import BaselineConfig, SeasonalBaseline
from detector.config import ConfigError, load_pipeline, parse_pipeline

BERLIN = ZoneInfo("Europe/Berlin")
WINDOW_S = 600.0


def _ts(local: datetime) -> float:
    return local.replace(tzinfo=BERLIN).timestamp()


def _traffic(ts: np.ndarray, weekend_flat: bool) -> np.ndarray:
    """Requests per window: 20 at night, 200 from 08:00 to 20:00 Berlin time (weekends 60 all day)."""
    out = np.empty(len(ts))
    for i, t in enumerate(ts.tolist()):
        local = datetime.fromtimestamp(t, BERLIN)
        if weekend_flat and local.weekday() >= 5:
            out[i] = 60.0
        else:
            out[i] = 200.0 if 8 <= local.hour < 20 else 20.0
    return out


def _learn(cfg: BaselineConfig, start: datetime, end: datetime, weekend_flat: bool = False) -> SeasonalBaseline:
    b = SeasonalBaseline(cfg)
    ts = np.arange(_ts(start), _ts(end), WINDOW_S) + WINDOW_S
    rng = np.random.default_rng(7)
    b.update(np.zeros(len(ts), dtype=np.int64), ts, rng.poisson(_traffic(ts, weekend_flat)).astype(float))
    return b


def _cfg(**kw) -> BaselineConfig:
    return BaselineConfig(kind="count", window_s=WINDOW_S, slot_s=1800.0, **kw)


def test_the_calendar_maps_the_same_local_hour_to_the_same_slot_in_winter_and_summer():
    """08:00 in Berlin is 07:00 UTC in January and 06:00 UTC in July: the same second of the local day."""
    cal = Calendar("Europe/Berlin", "weekday_weekend")
    winter, summer = _ts(datetime(2026, 1, 14, 8)), _ts(datetime(2026, 7, 15, 8))
    assert datetime.fromtimestamp(winter, timezone.utc).hour == 7
    assert datetime.fromtimestamp(summer, timezone.utc).hour == 6
    profile, tod = cal.split(np.array([winter, summer, _ts(datetime(2026, 7, 18, 8))]))  # Wed, Wed, Sat
    assert tod.tolist() == [8 * 3600.0] * 3
    assert profile.tolist() == [0, 0, 1]


def test_the_morning_ramp_is_still_expected_at_local_time_after_the_switch_to_summer_time():
    """Three weeks of winter history, then the night of 29 March 2026: on Monday 30 March the Berlin
    baseline expects the 08:00 ramp at 08:45 local (06:45 UTC); a UTC baseline still expects night there."""
    start, switch_day = datetime(2026, 3, 2), datetime(2026, 3, 30)
    berlin = _learn(_cfg(timezone="Europe/Berlin", day_profiles="none"), start, switch_day)
    utc = _learn(_cfg(timezone="UTC", day_profiles="none"), start, switch_day)
    ramp = _ts(datetime(2026, 3, 30, 8, 45))  # 06:45 UTC: in winter this UTC time was 07:45 local, night
    night = _ts(datetime(2026, 3, 30, 7, 15))  # 05:15 UTC
    for b in (berlin, utc):
        assert b.expect([0], [night]).seasonal[0]
    after, before = berlin.expect([0, 0], [ramp, night]).mean
    assert after == pytest.approx(200, rel=0.2) and before == pytest.approx(20, rel=0.5)
    # the UTC-indexed profile is an hour off after the switch (this is what the setting fixes)
    assert utc.expect([0], [ramp]).mean[0] < 100
    # and it keeps being right through the summer-time weeks it then learns
    later = _learn(_cfg(timezone="Europe/Berlin", day_profiles="none"), start, datetime(2026, 4, 13))
    ramp2, night2 = _ts(datetime(2026, 4, 13, 8, 45)), _ts(datetime(2026, 4, 13, 7, 15))
    assert later.expect([0], [ramp2]).mean[0] == pytest.approx(200, rel=0.2)
    assert later.expect([0], [night2]).mean[0] == pytest.approx(20, rel=0.5)


def test_weekends_get_their_own_profile():
    """Weekdays ramp to 200 at 08:00, weekends stay at 60: with weekday/weekend profiles Saturday morning
    expects 60 and Monday morning 200; one profile for every day mixes them."""
    start, end = datetime(2026, 1, 5), datetime(2026, 2, 2)  # four weeks, Monday to Monday
    split = _learn(_cfg(timezone="Europe/Berlin", day_profiles="weekday_weekend"), start, end, weekend_flat=True)
    mixed = _learn(_cfg(timezone="Europe/Berlin", day_profiles="none"), start, end, weekend_flat=True)
    saturday, monday = _ts(datetime(2026, 1, 31, 10)), _ts(datetime(2026, 2, 2, 10))
    sat, mon = split.expect([0, 0], [saturday, monday]).mean
    assert sat == pytest.approx(60, rel=0.25) and mon == pytest.approx(200, rel=0.2)
    profile_only = mixed.expect([0, 0], [saturday, monday]).mean
    assert abs(profile_only[0] - 60) > 0.25 * 60 or abs(profile_only[1] - 200) > 0.2 * 200


def test_a_bank_round_trips_with_its_timezone_and_day_profiles():
    """Saved and loaded, a bank answers exactly as before, under the same settings."""
    cfg = _cfg(timezone="Europe/Berlin", day_profiles="weekday_weekend")
    bank = BaselineBank({"volume": cfg})
    bank.baselines["volume"] = _learn(cfg, datetime(2026, 3, 16), datetime(2026, 4, 6), weekend_flat=True)
    bank.series_index(["svc"])
    back = BaselineBank.from_bytes(bank.to_bytes(), configs={"volume": cfg})
    ts = np.arange(_ts(datetime(2026, 4, 4)), _ts(datetime(2026, 4, 7)), 3600.0)
    a, b = bank["volume"].expect(np.zeros(len(ts), int), ts), back["volume"].expect(np.zeros(len(ts), int), ts)
    np.testing.assert_array_equal(a.mean, b.mean)
    np.testing.assert_array_equal(a.std, b.std)
    assert back.to_bytes() == bank.to_bytes()


def test_one_profile_for_every_day_starts_each_day_profile_and_a_timezone_change_is_refused():
    """A bank learnt with one profile (format version 1 files are such) continues under weekday/weekend
    profiles, each starting from it; learnt under UTC, it cannot be read as Berlin time."""
    old = _cfg(timezone="Europe/Berlin", day_profiles="none")
    bank = BaselineBank({"volume": old})
    bank.baselines["volume"] = _learn(old, datetime(2026, 1, 5), datetime(2026, 1, 19))
    bank.series_index(["svc"])
    new = dataclasses.replace(old, day_profiles="weekday_weekend")
    moved = BaselineBank.from_bytes(bank.to_bytes(), configs={"volume": new})
    sat, mon = _ts(datetime(2026, 1, 24, 10)), _ts(datetime(2026, 1, 19, 10))
    want = bank["volume"].expect([0, 0], [sat, mon]).mean
    np.testing.assert_allclose(moved["volume"].expect([0, 0], [sat, mon]).mean, want)
    with pytest.raises(BaselineFormatError, match="timezone"):
        BaselineBank.from_bytes(bank.to_bytes(), configs={"volume": dataclasses.replace(old, timezone="UTC")})


def test_the_pipeline_names_a_bad_zone_or_profile_setting():
    """An unknown zone or day-profile value fails at load, naming the key."""
    assert load_pipeline().baselines.timezone == "UTC"
    with pytest.raises(ConfigError, match="baselines.timezone"):
        parse_pipeline('[baselines]\ntimezone = "Europe/Atlantis"\n', "p.toml")
    with pytest.raises(ConfigError, match="baselines.day_profiles"):
        parse_pipeline('[baselines]\nday_profiles = "weekly"\n', "p.toml")
