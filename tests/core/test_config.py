"""Pipeline files: the default loads; mistakes fail at start naming file, key, value and expectation."""

from __future__ import annotations

import pytest

from detector.config import ConfigError, load_pipeline, parse_pipeline


def test_the_shipped_default_pipeline_loads_with_its_rules():
    """pipelines/default.toml is valid and carries the escalation policy."""
    p = load_pipeline()
    assert p.windows.width_s == 10 and p.windows.lateness_s == 5
    assert {r.action for r in p.rules} >= {"rollback", "page", "ticket"}


@pytest.mark.parametrize("text, message", [
    ("[windows]\nwidth_s = 7\n", "windows.width_s must be a positive number of seconds that divides a day"),
    ("[windows]\nwidht_s = 10\n", "windows.widht_s must be no such key"),
    ("[limits]\nmax_services = 'many'\n", "limits.max_services must be an integer (got 'many')"),
    ("[[rules]]\nname='x'\nsignal='error_rate'\naction='explode'\n", "rules[0].action must be one of"),
    ("[[rules]]\nname='x'\nsignal='error_rate'\n", "rules[0].action must be a value (this key is required)"),
    ("[tests]\nsignificance = 2\n", "tests.significance must be a p-value in (0, 0.5) (got 2"),
    ("[topics]\nincidents = 'bad name'\n", "topics.incidents must be a Kafka topic name"),
    ("[windows\n", "not valid TOML"),
    ("[sinks]\njsonl = 'alerts.jsonl'\n", "sinks.jsonl must be left out: no code ever read it"),
])
def test_bad_config_fails_fast_naming_file_key_value_and_expectation(text, message):
    """Each mistake yields one ConfigError that says where and what was expected."""
    with pytest.raises(ConfigError) as e:
        parse_pipeline(text, "pipelines/mine.toml")
    assert str(e.value).startswith("pipelines/mine.toml: ")
    assert message in str(e.value)


def test_a_missing_pipeline_file_is_a_clear_error(tmp_path):
    """A path that cannot be read is named in the error."""
    with pytest.raises(ConfigError, match="nope.toml: cannot read pipeline file"):
        load_pipeline(tmp_path / "nope.toml")
