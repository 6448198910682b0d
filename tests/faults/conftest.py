"""The fault suite's shared parts: the fault upstream, and the tally of what the suite
did — faults injected, responses checked, events lost — printed at the end of the run.

Every test adds what it did to the tally (`tally` fixture); the figures come from the
checks themselves, so a test that loses an event both fails and shows it here.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.support.fault_upstream import FaultUpstream, run_fault_upstream


@dataclass
class Tally:
    faults: int = 0  # faults injected: failed upstream answers, dropped clients
    responses: int = 0  # responses whose whole event log was read and checked
    events_lost: int = 0  # events or tokens that should be in a checked log and are not

    def line(self) -> str:
        return (
            f"fault suite: {self.faults} faults injected, {self.responses} responses checked,"
            f" events lost: {self.events_lost}"
        )


TALLY = pytest.StashKey[Tally]()


@pytest.fixture(scope="session")
def tally(request: pytest.FixtureRequest) -> Tally:
    return request.config.stash.setdefault(TALLY, Tally())


@pytest.fixture(scope="session")
def fault_upstream() -> Iterator[FaultUpstream]:
    with run_fault_upstream() as upstream:
        yield upstream


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    tally = terminalreporter.config.stash.get(TALLY, None)
    if tally is not None:
        terminalreporter.write_line(tally.line())
