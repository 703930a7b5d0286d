"""Integration fixtures: the FullStory emulator and consumers as processes, over real sockets on
127.0.0.1."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import API_KEY, ORG, ConsumerProcess

from consumer.localenv.emulator import EmulatorProcess


@pytest.fixture
def emulator() -> Iterator[EmulatorProcess]:
    with EmulatorProcess(api_keys=(API_KEY,), org_id=ORG) as emu:
        yield emu


@pytest.fixture
def consumers(tmp_path: Path) -> Iterator[Callable[..., ConsumerProcess]]:
    started: list[ConsumerProcess] = []

    def make(*args: Any, **kwargs: Any) -> ConsumerProcess:
        n = len(started)
        proc = ConsumerProcess(*args, log_path=tmp_path / f"consumer-{n}.log", **kwargs)
        started.append(proc)
        return proc

    yield make
    for proc in started:
        if proc.proc is not None and proc.proc.poll() is None:
            proc.proc.kill()
            proc.proc.wait(timeout=30)
