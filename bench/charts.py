"""PNG charts of latency distributions (matplotlib, Agg backend; imported lazily).

Each function takes the output path first and plain data; `report._draw` selects the
Agg backend and skips the chart with a note when matplotlib is missing.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

Series = dict[str, Sequence[float]]  # label → values (already in the panel's unit)
Panel = tuple[str, str, Series]  # (title, unit, series)


def _figure(panels: int) -> tuple[Any, list[Any]]:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 4.2), squeeze=False)
    return fig, list(axes[0])


def _save(fig: Any, path: Path, title: str) -> None:
    import matplotlib.pyplot as plt

    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def boxes(path: Path, title: str, panels: Sequence[Panel]) -> None:
    """One box plot per panel, every value drawn as a jittered dot over its box."""
    import random

    fig, axes = _figure(len(panels))
    jitter = random.Random(0)
    for ax, (panel_title, unit, series) in zip(axes, panels, strict=True):
        labels = list(series)
        data = [list(series[label]) for label in labels]
        ax.boxplot(data, showfliers=False)
        ax.set_xticks(range(1, len(labels) + 1), labels)
        for i, values in enumerate(data, start=1):
            xs = [i + jitter.uniform(-0.15, 0.15) for _ in values]
            ax.scatter(xs, values, s=6, alpha=0.4)
        ax.set_title(panel_title)
        ax.set_ylabel(unit)
        ax.set_ylim(bottom=0)
        ax.grid(axis="y", alpha=0.3)
    _save(fig, path, title)


def cdfs(path: Path, title: str, panels: Sequence[Panel], log_x: Sequence[bool] = ()) -> None:
    """Empirical CDFs, one line per series; `log_x[i]` puts panel i on a log x axis."""
    fig, axes = _figure(len(panels))
    logs = list(log_x) + [False] * (len(panels) - len(log_x))
    for ax, log, (panel_title, unit, series) in zip(axes, logs, panels, strict=True):
        for label, values in series.items():
            data = sorted(values)
            if not data:
                continue
            ys = [(i + 1) / len(data) for i in range(len(data))]
            ax.step(data, ys, where="post", label=f"{label} (n={len(data)})")
        if log:
            ax.set_xscale("log")
        ax.set_title(panel_title)
        ax.set_xlabel(unit)
        ax.set_ylabel("fraction of streams")
        ax.grid(alpha=0.3)
        ax.legend()
    _save(fig, path, title)


def timeline(
    path: Path,
    title: str,
    seconds: Sequence[float],
    open_streams: Sequence[int],
    rss_mb: Sequence[float],
) -> None:
    """Open streams and server RSS over time (two y axes)."""
    fig, axes = _figure(1)
    ax = axes[0]
    ax.plot(seconds, open_streams, color="tab:blue", label="open streams")
    ax.set_xlabel("seconds")
    ax.set_ylabel("open streams", color="tab:blue")
    other = ax.twinx()
    other.plot(seconds, rss_mb, color="tab:red", label="Tether RSS")
    other.set_ylabel("Tether RSS (MB)", color="tab:red")
    ax.grid(alpha=0.3)
    _save(fig, path, title)
