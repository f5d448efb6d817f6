"""`detector run` as a process: the pipeline and the command line resolved, the sidecar run until
SIGTERM or Ctrl-C, and the exit code.

The first SIGTERM/SIGINT stops cleanly (final checkpoint and commit within
kafka.shutdown_timeout_s); a second one skips the checkpoint and exits at once
(130). Failures the user must fix (port taken, no broker) are one line, exit 1.
A client call stuck on a frozen broker cannot keep the process alive after the
run is over (`_run_bounded`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import sys

from detector.config import ConfigError, load_pipeline
from detector.runtime.app import Sidecar
from detector.runtime.failures import RunFailure
from detector.runtime.logsetup import configure
from detector.runtime.topics import TopicSetupError
from detector.sinks import AlertStateError, RollbackConfigError
from detector.smoke.settings import SmokeSettingError, resolve_env


def run_live(args) -> int:
    """`detector run`: build the sidecar from the pipeline and the command line, run until SIGTERM or Ctrl-C.

    The first SIGTERM/SIGINT stops cleanly (final checkpoint and commit within
    kafka.shutdown_timeout_s); a second one skips the checkpoint and exits at once
    (130). Failures the user must fix (port taken, no broker) are one line, exit 1.
    """
    configure(os.environ.get("DETECTOR_LOG_LEVEL", "info"))
    pipeline = load_pipeline(getattr(args, "pipeline", None))
    try:
        pipeline = dataclasses.replace(pipeline, smoke=resolve_env(pipeline.smoke, dict(os.environ)))
    except SmokeSettingError as e:
        raise ConfigError(f"{pipeline.source}: {e.key} must be {e.expected} (got {e.value})") from None
    bootstrap = args.bootstrap_servers or pipeline.kafka.bootstrap_servers
    if not bootstrap:
        raise ConfigError("no Kafka bootstrap servers: pass --bootstrap-servers HOST:PORT, set "
                          "KAFKA_BOOTSTRAP_SERVERS, or set kafka.bootstrap_servers in the pipeline file")

    async def main() -> int:
        sidecar = Sidecar(pipeline, bootstrap, group_id=getattr(args, "group_id", None),
                          http_port=getattr(args, "http_port", None),
                          alertmanager_url=getattr(args, "alertmanager_url", None))
        loop = asyncio.get_running_loop()

        def on_signal(signame: str) -> None:
            if not sidecar.stopping.is_set():
                sidecar.log.info("stop requested", signal=signame, detail="again to skip the final checkpoint")
                sidecar.stopping.set()
            elif not sidecar.hurry.is_set():
                sidecar.log.warning("stop requested again: skipping the final checkpoint", signal=signame)
                sidecar.hurry.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal, sig.name)
        code = await sidecar.run()
        if sidecar.started:
            print(f"detector: {sidecar.done_line()}", file=sys.stderr, flush=True)
        return code

    stuck: list[bool] = [False]
    try:
        code = _run_bounded(main(), stuck)
    except (RunFailure, TopicSetupError, AlertStateError, RollbackConfigError) as e:
        print(f"detector: {e}", file=sys.stderr, flush=True)
        code = 1
    if stuck[0]:
        # A client call stuck on a frozen broker ignores cancellation for its own timeout; the
        # run is over (final checkpoint written or given up), so the process ends now.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def _run_bounded(coro, stuck: list[bool], cleanup_s: float = 1.0):
    """`asyncio.run`, except that tasks still pending at the end get `cleanup_s` to finish their
    cancellation instead of as long as they like; `stuck[0]` says whether some did not."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(coro)
    finally:
        pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for t in pending:
            t.cancel()
        if pending:
            _done, still = loop.run_until_complete(asyncio.wait(pending, timeout=cleanup_s))
            stuck[0] = bool(still)
        if not stuck[0]:
            loop.run_until_complete(loop.shutdown_asyncgens())
            asyncio.set_event_loop(None)
            loop.close()
