"""Smoke test of the benchmark harness: a tiny quick run end to end, no timing assertions.

It checks that `python benchmarks/run.py` still starts its broker and emulator, loads the topic,
runs the ceilings and the service (and Quix when installed), and the filtered stream's pair (ceiling
B and the service with 99% excluded), and that each contender processed every event; the figures
themselves are only printed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from consumer.transform import DestinationSettings, Requests, transform

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks"
EVENTS = 2_000

pytestmark = pytest.mark.integration


def _expected_requests(filtered: bool = False) -> int:
    """Requests the mapping makes for the benchmark's events (what FullStory must receive), or
    for the filtered stream with its settings."""
    sys.path.insert(0, str(BENCH))
    try:
        import datagen
    finally:
        sys.path.remove(str(BENCH))
    mapping = datagen.FILTERED_SETTINGS if filtered else datagen.SETTINGS
    stream = datagen.filtered_events if filtered else datagen.events
    settings, _ = DestinationSettings.from_mapping(mapping)
    total = 0
    for event in stream(EVENTS):
        outcome = transform(event, settings)
        if isinstance(outcome, Requests):
            total += len(outcome.requests)
    return total


def test_quick_run_processes_every_event(tmp_path: Path) -> None:
    if shutil.which("java") is None:
        pytest.skip("java is not on PATH: cannot run the local Kafka broker")
    only = "a,b,realtime,filtered"
    if importlib.util.find_spec("quixstreams") is not None:
        only += ",quix"
    cmd = [
        sys.executable,
        str(BENCH / "run.py"),
        "--events",
        str(EVENTS),
        "--only",
        only,
        "--results",
        str(tmp_path),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False, cwd=ROOT)
    print(proc.stdout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (result_file,) = tmp_path.glob("run-*.json")
    report = json.loads(result_file.read_text())
    runs = report["suite"]["runs"]
    assert set(runs) == {*only.split(","), "b-filtered"}
    expected = {"realtime": _expected_requests(), "quix": _expected_requests()}
    expected["filtered"] = _expected_requests(filtered=True)
    assert 0 < expected["filtered"] <= EVENTS // 50  # 1% kept (identifies and groups are users)
    for name, contender_runs in runs.items():
        for run in contender_runs:
            assert run["ok"], (name, run["note"])
            assert run["events"] == EVENTS, name
            if name in expected:
                assert run["requests"] == expected[name], name
                assert 0.0 < run["machine_busy_cores"] <= (os.cpu_count() or 1), name
    assert "service, realtime" in report["suite"]["table"]
    # A smoke-sized filtered run sends its first request late, so its CPU window can be under
    # one clock tick: the ratio may be 0 here, but it is measured and reported.
    assert report["suite"]["filtered_vs_ceiling_b"]["ratio"] >= 0
    assert "filtered stream (99% excluded by `events`)" in report["suite"]["table"]


@pytest.mark.parametrize("stream", [[], ["--filtered"]], ids=["mix", "filtered"])
def test_stage_costs_print_each_stage(stream: list[str]) -> None:
    cmd = [sys.executable, str(BENCH / "stages.py"), "--events", "300", "--repeat", "1", *stream]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = (re.match(r"(\S+).*?([\d.]+) µs per event", line) for line in proc.stdout.splitlines())
    costs = {m[1]: float(m[2]) for m in found if m}
    assert set(costs) == {"decode", "transform", "JSON", "all", "detect", "route"}, proc.stdout
    assert all(cost > 0 for cost in costs.values()), proc.stdout
    parts = costs["decode"] + costs["transform"] + costs["JSON"]
    assert abs(costs["all"] - parts) < 0.2, proc.stdout
