"""`latest.png`: per scenario, refscan's, W&B's and rclone's median wall time as bars on a log scale, with
refscan's own CPU per object under the scenario's name (matplotlib, from the `bench` extra).

`python -m bench` draws it after every run; `python -m bench.plot [DIR]` redraws DIR/latest.png from
DIR/latest.json (default bench/results).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

from .contenders import Sample
from .report import Result, ScenarioResult, us

CONTENDERS = ("refscan", "wandb", "rclone")
COLOURS = {"refscan": "#1f77b4", "wandb": "#ff7f0e", "rclone": "#2ca02c"}
LABELS = {"refscan": "refscan", "wandb": "W&B add_reference", "rclone": "rclone lsjson"}


def plot(path: Path, run: dict[str, Any], scenarios: Sequence[ScenarioResult]) -> Path:
    """Draw the chart to `path` (written whole, then renamed) and return it. Raises ImportError without
    matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [s for s in scenarios if any(r.median is not None for r in s.results)]
    width = 0.27
    fig, ax = plt.subplots(figsize=(max(8.0, 1.25 * len(shown) + 2), 6.2), dpi=110)
    for k, name in enumerate(CONTENDERS):
        xs: list[float] = []
        heights: list[float] = []
        hatched: list[bool] = []
        for i, s in enumerate(shown):
            r = s.get(name)
            if r is None or r.median is None:
                continue
            xs.append(i + (k - 1) * width)
            heights.append(r.median)
            hatched.append(r.extrapolated_from is not None)
        bars = ax.bar(xs, heights, width, label=LABELS[name], color=COLOURS[name])
        for bar, extrapolated in zip(bars, hatched, strict=True):
            if extrapolated:
                bar.set_hatch("//")
                bar.set_alpha(0.6)
    ax.set_yscale("log")
    ax.set_ylabel("median wall time, s (log scale)")
    ticks = []
    for s in shown:
        r = s.get("refscan")
        cpu = r.cpu_us_per_object if r is not None else None
        ticks.append(s.name + (f"\nrefscan CPU\n{us(cpu)}/object" if cpu is not None else ""))
    ax.set_xlim(-0.6, max(len(shown), 2) - 0.4)
    ax.set_xticks(range(len(shown)))
    ax.set_xticklabels(ticks, fontsize=8)
    ax.grid(axis="y", which="both", alpha=0.25)
    ax.set_axisbelow(True)
    top = max((r.median for s in shown for r in s.results if r.median is not None), default=1.0)
    ax.set_ylim(top=top * 8)
    bottom = ax.get_ylim()[0]
    for i, s in enumerate(shown):
        for k, name in enumerate(CONTENDERS):
            r = s.get(name)
            x = i + (k - 1) * width
            if r is not None and r.median is not None:
                text = ("~" if r.extrapolated_from else "") + (
                    f"{r.median:.3g} s" if r.median < 1000 else f"{r.median:.0f} s"
                )
                ax.annotate(text, (x, r.median), xytext=(0, 2), textcoords="offset points", ha="center",
                            va="bottom", fontsize=7, rotation=90)  # fmt: skip
            elif r is not None and r.skipped:
                ax.annotate("n/a", (x, bottom), xytext=(0, 3), textcoords="offset points", ha="center",
                            va="bottom", fontsize=7, color="grey", rotation=90)  # fmt: skip
    m = run.get("machine", {})
    ax.set_title(
        f"refscan vs W&B vs rclone at {run.get('rtt_ms', 0):g} ms RTT ({run.get('started', '')}; "
        f"{m.get('nproc', '?')} cores)\nhatched: extrapolated (--quick); n/a: skipped (no equivalent or too slow)",
        fontsize=9,
    )
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)
    return path


def load(path: Path) -> tuple[dict[str, Any], list[ScenarioResult]]:
    """A `latest.json` back as (run, scenarios); fields a run before them did not record stay at defaults."""
    data = json.loads(path.read_text(encoding="utf-8"))
    sample_fields = {f.name for f in fields(Sample)}
    result_fields = {f.name for f in fields(Result)} - {"samples"}
    scenario_fields = {f.name for f in fields(ScenarioResult)} - {"results"}
    scenarios = []
    for s in data.pop("scenarios"):
        results = [
            Result(
                **{k: v for k, v in r.items() if k in result_fields},
                samples=[Sample(**{k: v for k, v in x.items() if k in sample_fields}) for x in r["samples"]],
            )
            for r in s["results"]
        ]
        scenarios.append(ScenarioResult(**{k: v for k, v in s.items() if k in scenario_fields}, results=results))
    return data, scenarios


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    folder = Path(args[0]) if args else Path(__file__).resolve().parent / "results"
    run, scenarios = load(folder / "latest.json")
    print(plot(folder / "latest.png", run, scenarios))


if __name__ == "__main__":
    main()
