"""The rollback hook: once per verdict id across restarts, dry run, timeouts, no shell, HTTP."""

from __future__ import annotations

import json
import shlex
import sys
import time
from pathlib import Path

import pytest

from detector.sinks import (
    RollbackConfigError,
    RollbackHook,
    encode_action,
)

from detector.records import Anomaly

from sinkkit import EVENT_TS, Recorder, anomaly, client, verdict


def runs(log_file: Path) -> list[list[str]]:
    return [json.loads(line) for line in log_file.read_text().splitlines()] if log_file.exists() else []


async def test_rollback_runs_once_per_verdict_id_across_restart(tmp_path: Path,
                                                                rollback_cmd: tuple[str, Path]) -> None:
    """The command runs once per verdict id, also when a new hook instance reads the same state file."""
    template, log_file = rollback_cmd
    state = tmp_path / "state" / "rollback.json"
    hook = RollbackHook(command=template, dry_run=False, timeout_s=10, state_path=state)
    await hook.start()
    hook.submit(verdict("d-981"))
    hook.submit(verdict("d-981"))
    hook.submit(verdict("d-5", "page"))  # not a rollback
    await hook.flush(10)
    hook.submit(verdict("d-981"))
    await hook.flush(10)
    await hook.close(1)
    [outcome] = hook.take_outcomes()
    assert outcome["outcome"] == "ok" and outcome["exit_code"] == 0
    assert outcome["type"] == "action" and outcome["id"] == "act-v-d-981" and outcome["via"] == "command"
    assert "rolled back deployment/checkout --to-revision-of=d-981 v43" in outcome["output_tail"]
    assert outcome["target"].endswith("deployment/checkout --to-revision-of=d-981 v43")
    assert json.loads(encode_action(outcome))["verdict_id"] == "v-d-981"

    restarted = RollbackHook(command=template, dry_run=False, timeout_s=10, state_path=state)
    await restarted.start()
    restarted.submit(verdict("d-981"))
    restarted.submit(verdict("d-982", service="search"))
    await restarted.flush(10)
    await restarted.close(1)
    assert runs(log_file) == [["deployment/checkout", "--to-revision-of=d-981", "v43"],
                              ["deployment/search", "--to-revision-of=d-982", "v43"]]
    assert await restarted.execute(verdict("d-981")) is None


async def test_rollback_dry_run_runs_nothing(tmp_path: Path, rollback_cmd: tuple[str, Path]) -> None:
    """In dry-run mode the outcome names the command that would run and nothing is executed."""
    template, log_file = rollback_cmd
    hook = RollbackHook(command=template, dry_run=True, state_path=tmp_path / "state.json")
    outcome = await hook.execute(verdict())
    assert outcome is not None and outcome["outcome"] == "dry_run" and outcome["exit_code"] is None
    assert "deployment/checkout" in outcome["target"]
    assert runs(log_file) == []


async def test_rollback_timeout_kills_a_hanging_command(tmp_path: Path) -> None:
    """A command that outlives timeout_s is killed; the outcome is failed with its output so far."""
    script = tmp_path / "hang.py"
    script.write_text("import time\nprint('draining {0}', flush=True)\ntime.sleep(60)\n")
    template = f"{shlex.quote(sys.executable)} {shlex.quote(str(script))}"
    hook = RollbackHook(command=template, dry_run=False, timeout_s=0.5, state_path=tmp_path / "state.json")
    started = time.monotonic()
    outcome = await hook.execute(verdict())
    assert time.monotonic() - started < 5
    assert outcome is not None and outcome["outcome"] == "failed"
    assert outcome["exit_code"] == -9
    assert "timed out after 0.5 s" in outcome["error"]
    assert "draining" in outcome["output_tail"]


async def test_rollback_values_are_arguments_never_shell(tmp_path: Path, rollback_cmd: tuple[str, Path]) -> None:
    """A service name with shell syntax stays one argument; no shell ever sees it."""
    template, log_file = rollback_cmd
    hook = RollbackHook(command=template, dry_run=False, state_path=tmp_path / "state.json")
    evil = f"x; touch {tmp_path / 'pwned'}"
    outcome = await hook.execute(verdict(service=evil))
    assert outcome is not None and outcome["outcome"] == "ok"
    assert runs(log_file)[0][0] == f"deployment/{evil}"
    assert not (tmp_path / "pwned").exists()


async def test_rollback_failing_command_reports_exit_code(tmp_path: Path) -> None:
    """A command that exits non-zero is a failed outcome with that exit code."""
    template = f"{shlex.quote(sys.executable)} -c 'import sys; print(\"no such deployment\"); sys.exit(3)'"
    hook = RollbackHook(command=template, dry_run=False, state_path=tmp_path / "state.json")
    outcome = await hook.execute(verdict())
    assert outcome is not None
    assert (outcome["outcome"], outcome["exit_code"]) == ("failed", 3)
    assert "no such deployment" in outcome["output_tail"]


def test_rollback_rejects_unknown_placeholders_and_bad_quotes() -> None:
    """Templates with unknown placeholders or unbalanced quotes fail at construction with the fix in the message."""
    with pytest.raises(RollbackConfigError, match=r"\{svc\}.*known placeholders: \{service\}"):
        RollbackHook(command="kubectl rollout undo deployment/{svc}")
    with pytest.raises(RollbackConfigError, match="quotes"):
        RollbackHook(command="kubectl 'rollout")
    with pytest.raises(RollbackConfigError, match="exactly one"):
        RollbackHook(command="true", url="http://127.0.0.1:1/")


def test_rollback_refuses_a_corrupt_state_file(tmp_path: Path) -> None:
    """An unreadable state file stops the hook instead of forgetting which rollbacks already ran."""
    state = tmp_path / "state.json"
    state.write_text("{not json")
    with pytest.raises(RollbackConfigError, match="state file"):
        RollbackHook(command="true", state_path=state)


async def test_rollback_over_http_posts_once_with_idempotency_key(server: Recorder, tmp_path: Path) -> None:
    """The HTTP action POSTs the verdict with an Idempotency-Key and reports the status."""
    hook = RollbackHook(url=server.url + "/rollback", dry_run=False, client=client(),
                        state_path=tmp_path / "state.json")
    await hook.start()
    hook.submit(verdict())
    hook.submit(verdict())
    await hook.flush(5)
    await hook.close(1)
    [req] = server.requests
    assert req.headers["idempotency-key"] == "act-v-d-981"
    body = req.json()
    assert body["action"] == "rollback" and body["verdict"]["id"] == "v-d-981"
    [outcome] = hook.take_outcomes()
    assert outcome["outcome"] == "ok" and outcome["http_status"] == 202 and outcome["via"] == "http"


async def test_rollback_skips_verdicts_older_than_max_age(tmp_path: Path, rollback_cmd: tuple[str, Path]) -> None:
    """With max_verdict_age_s set, a verdict from a replay of old events is skipped, not acted on."""
    template, log_file = rollback_cmd
    hook = RollbackHook(command=template, dry_run=False, state_path=tmp_path / "s.json", max_verdict_age_s=3600,
                        clock=lambda: EVENT_TS + 7200)
    outcome = await hook.execute(verdict())
    assert outcome is not None and outcome["outcome"] == "skipped"
    assert runs(log_file) == []




def _escalation(action: str = "rollback") -> Anomaly:
    """What the judge sends when a rollback (or page) rule holds after an early ticket of d-981."""
    a = anomaly()
    return Anomaly(**{**a.__dict__, "detail": {"rule": "errors-everywhere", "action": action,
                                               "escalates": "v-d-981"}}).with_id()


async def test_a_rollback_escalating_an_early_ticket_runs_the_action_once_for_its_verdict(
        tmp_path: Path, rollback_cmd: tuple[str, Path]) -> None:
    """The ticket verdict runs nothing; the anomaly escalating it to a rollback runs the action once, for
    the verdict's id; a page escalation, a plain critical anomaly and a repeat run nothing."""
    template, log_file = rollback_cmd
    hook = RollbackHook(command=template, dry_run=False, timeout_s=10, state_path=tmp_path / "s.json")
    await hook.start()
    for record in (verdict(decision="ticket"), anomaly(), _escalation("page"), _escalation(), _escalation()):
        hook.submit(record)
    await hook.flush(10)
    await hook.close(1)
    [outcome] = hook.take_outcomes()
    assert (outcome["outcome"], outcome["id"], outcome["verdict_id"]) == ("ok", "act-v-d-981", "v-d-981")
    assert outcome["escalation_id"] == _escalation().id
    assert runs(log_file) == [["deployment/checkout", "--to-revision-of=d-981", "v43"]]
