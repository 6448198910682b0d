"""What a scenario hands back: tables, target checks, JSON, and how to print them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson


@dataclass(frozen=True)
class Check:
    """One target: the measured value, the goal, and whether it was met (None: not judged)."""

    what: str
    measured: str
    goal: str
    passed: bool | None

    @property
    def verdict(self) -> str:
        return {True: "PASS", False: "FAIL", None: "n/a"}[self.passed]


@dataclass
class Table:
    title: str
    header: list[str]
    rows: list[list[str]] = field(default_factory=list)

    def add(self, *cells: object) -> None:
        self.rows.append([_cell(c) for c in cells])

    def render(self) -> str:
        grid = [self.header, *self.rows]
        widths = [max(len(row[i]) for row in grid) for i in range(len(self.header))]

        def line(row: Sequence[str]) -> str:
            cells = [row[0].ljust(widths[0])]
            cells += [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
            return "  ".join(cells).rstrip()

        rule = "  ".join("-" * w for w in widths)
        return "\n".join([self.title, line(self.header), rule, *map(line, self.rows)])


@dataclass
class ScenarioReport:
    key: str  # file stem in bench/results/, e.g. "s1-single-stream"
    title: str
    tables: list[Table] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    chart: Callable[[Path], None] | None = None
    skipped: str | None = None

    def render(self) -> str:
        parts = [f"== {self.title} =="]
        if self.skipped:
            return "\n".join([*parts, f"skipped: {self.skipped}"])
        parts += [table.render() + "\n" for table in self.tables]
        if self.checks:
            parts.append(checks_table(self.checks).render())
        parts += [f"note: {note}" for note in self.notes]
        return "\n".join(parts)

    def save(self, results: Path) -> list[str]:
        """Write the JSON (and the chart); returns notes about what was written."""
        results.mkdir(parents=True, exist_ok=True)
        payload = {
            "title": self.title,
            "skipped": self.skipped,
            "tables": [{"title": t.title, "header": t.header, "rows": t.rows} for t in self.tables],
            "checks": [c.__dict__ | {"verdict": c.verdict} for c in self.checks],
            "notes": self.notes,
            "data": self.data,
        }
        path = results / f"{self.key}.json"
        path.write_bytes(orjson.dumps(payload, option=orjson.OPT_INDENT_2))
        written = [f"wrote {path}"]
        if self.chart is not None:
            written.append(_draw(self.chart, results / f"{self.key}.png"))
        return written


def _draw(chart: Callable[[Path], None], path: Path) -> str:
    try:
        import matplotlib

        matplotlib.use("Agg")
    except ImportError:
        return "chart skipped: matplotlib is not installed (pip install -e '.[bench]')"
    chart(path)
    return f"wrote {path}"


def checks_table(checks: Sequence[Check], title: str = "targets") -> Table:
    table = Table(title, ["target", "measured", "goal", "result"])
    for check in checks:
        table.add(check.what, check.measured, check.goal, check.verdict)
    return table


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def ms(seconds: float | None, digits: int = 2) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.{digits}f} ms"


def us(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1e6:.1f} µs"
