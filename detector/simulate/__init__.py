"""Production-traffic simulator: scenario files in, contract events out.

`load_scenario` reads and validates a TOML scenario, `Simulator` turns it
into events in arrival order (deterministic per seed), `write_jsonl` and
`produce_kafka` send them on, and `build_truth` says what was injected so
that verdicts can be scored. `detector simulate` (see `main`) ties these
together on the command line.
"""

from detector.simulate.output import DEFAULT_TOPICS, Counts, produce_kafka, simulate_to_file, write_jsonl
from detector.simulate.scenario import Scenario, ScenarioError, load_scenario, parse_scenario, parse_scenario_text
from detector.simulate.traffic import Chunk, Simulator
from detector.simulate.truth import build_truth, truth_path_for, write_truth

__all__ = [
    "DEFAULT_TOPICS",
    "Chunk",
    "Counts",
    "Scenario",
    "ScenarioError",
    "Simulator",
    "build_truth",
    "load_scenario",
    "parse_scenario",
    "parse_scenario_text",
    "produce_kafka",
    "simulate_to_file",
    "truth_path_for",
    "write_jsonl",
    "write_truth",
]
