"""build_sinks: which sinks the settings switch on, and the set fanning out."""

from __future__ import annotations

from pathlib import Path


from detector.config import Sinks
from detector.sinks import (
    build_sinks,
)

from sinkkit import ROUTING_KEY, Recorder, verdict


# --- build_sinks ---


def test_build_sinks_switches_sinks_on_by_settings_and_environment(tmp_path: Path) -> None:
    """Each sink is built only when its setting is given; the PagerDuty key may come from the environment."""
    assert not build_sinks(Sinks())
    s = build_sinks(Sinks(webhook_url="http://127.0.0.1:1/h", rollback_command="kubectl rollout undo {service}"),
                    alertmanager_url="http://127.0.0.1:9093", env={"DETECTOR_PAGERDUTY_ROUTING_KEY": ROUTING_KEY},
                    rollback_state_path=tmp_path / "r.json")
    assert [x.name for x in s.sinks] == ["alertmanager", "pagerduty", "webhook", "rollback"]
    assert s.alertmanager is not None and s.alertmanager.url == "http://127.0.0.1:9093/api/v2/alerts"
    assert s.rollback is not None and s.rollback.dry_run is True
    for sink in s.sinks:
        if hasattr(sink, "client") and sink.client is not None:
            sink.client.close()


async def test_sink_set_fans_out_and_reports_actions(server: Recorder, tmp_path: Path,
                                                      rollback_cmd: tuple[str, Path]) -> None:
    """One submit reaches every sink; take_actions returns the rollback outcome once."""
    template, _ = rollback_cmd
    settings = Sinks(alertmanager_url=server.url, webhook_url=server.url + "/hook", rollback_command=template,
                     max_retries=1)
    sinks = build_sinks(settings, rollback_state_path=tmp_path / "r.json")
    await sinks.start()
    sinks.submit(verdict())
    assert await sinks.flush(5)
    [action] = sinks.take_actions()
    assert action["outcome"] == "dry_run"
    assert sinks.take_actions() == []
    await sinks.close(1)
    assert sorted(r.path for r in server.requests) == ["/api/v2/alerts", "/hook"]
    assert sinks.stats()["webhook"]["sent"] == 1
