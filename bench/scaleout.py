"""`python -m bench.scaleout`: one large synthetic S3 folder listed to JSONL locally and on Ray, and a
kill-and-resume run with a checkpoint.

The synthetic S3 server (bench/synthetic.py) serves `--objects` keys (default 10,000,000) behind the delay
proxy at `--rtt` ms. Each run is `refscan scan s3://synthetic/data/ --format jsonl -o FILE` in its own process
(through bench.spawn, so the driver's peak RSS and CPU are its own):

- `local`: one process, the usual key-range walk;
- `ray-1`, `ray-2`: `--ray --ray-workers N` on a local Ray that refscan starts (and stops) itself; the Ray
  actors' peak RSS is sampled from `ps` while the run lasts;
- `checkpoint`: `--checkpoint DIR` uninterrupted; `killed`: the same, SIGKILLed after half that time;
  `resumed`: the same command again, finishing the job. Time lost = killed + resumed - checkpoint.

Every run's output is checked to hold exactly `--objects` lines. Results: `--out` (default bench/results)
`scaleout.json` and `scaleout.md`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from .proxy import DelayProxy

URI = "s3://synthetic/data/"


def _server(objects: int) -> tuple[subprocess.Popen[str], int]:
    server = subprocess.Popen(
        [sys.executable, "-m", "bench.servers", "synthetic", "--objects", str(objects)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None
    line = server.stdout.readline()
    while line and not line.startswith("LISTENING"):
        line = server.stdout.readline()
    if not line:
        raise RuntimeError("the synthetic S3 server did not start")
    return server, int(line.split()[1])


class _WorkerRSS:
    """Peak RSS of the Ray actor processes (`ray::_RayWorker`), sampled every 0.5 s while in use."""

    def __init__(self) -> None:
        self.peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.5):
            ps = subprocess.run(["ps", "-eo", "rss=,args="], capture_output=True, text=True, check=False).stdout
            for line in ps.splitlines():
                rss, _, args = line.strip().partition(" ")
                if "_RayWorker" in args and rss.isdigit():
                    self.peak_kb = max(self.peak_kb, int(rss))

    def __enter__(self) -> _WorkerRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _run(args: list[str], env: dict[str, str], out: Path, *, kill_after: float | None = None) -> dict[str, Any]:
    """`refscan scan URI --format jsonl -o out ARGS` through bench.spawn: wall, driver CPU, driver peak RSS."""
    with tempfile.NamedTemporaryFile(suffix=".json") as usage:
        argv = [sys.executable, "-m", "bench.spawn", usage.name, sys.executable, "-m", "refscan", "-q", "scan", URI]
        argv += ["--max-objects", str(10**10), "--format", "jsonl", "-o", str(out), *args]
        started = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, text=True)
        if kill_after is not None:
            time.sleep(kill_after)
            children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True, check=False)
            for pid in children.stdout.split():  # the CLI, not the launcher (which then reports its peak)
                os.kill(int(pid), signal.SIGKILL)
        _, stderr = proc.communicate()
        wall = time.perf_counter() - started
        if kill_after is None and proc.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed: {stderr[-2000:]}")
        spawned = json.loads(Path(usage.name).read_text())
    return {"seconds": wall, "cpu": spawned["cpu"], "peak_rss_mb": round(spawned["maxrss_kb"] / 1024, 1)}


def _lines(path: Path) -> int:
    with path.open("rb") as f:
        return sum(1 for _ in f)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.scaleout", description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=10_000_000)
    parser.add_argument("--rtt", type=float, default=20.0, help="ms (default 20)")
    parser.add_argument("--runs", default="local,ray-1,ray-2,resume", help="comma-separated")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)
    wanted = set(args.runs.split(","))
    work = Path(tempfile.mkdtemp(prefix="rs-scaleout-"))
    server, port = _server(args.objects)
    runs: dict[str, dict[str, Any]] = {}
    try:
        with DelayProxy("127.0.0.1", port, args.rtt / 1000) as proxy:
            env = {
                **os.environ,
                "AWS_ENDPOINT_URL_S3": proxy.url,
                "AWS_ACCESS_KEY_ID": "bench",
                "AWS_SECRET_ACCESS_KEY": "bench",
                "AWS_REGION": "us-east-1",
                "RAY_TMPDIR": str(work / "ray"),
            }

            def run(name: str, extra: list[str], *, workers: int = 0, kill_after: float | None = None) -> None:
                out = work / f"{name}.jsonl"
                print(f"[scaleout] {name} ...", flush=True)
                with _WorkerRSS() as rss:
                    result = _run(extra, env, out, kill_after=kill_after)
                result["requests"] = proxy.reset().requests
                if kill_after is None:
                    result["entries"] = _lines(out)
                    if result["entries"] != args.objects:
                        raise RuntimeError(f"{name}: {result['entries']} lines for {args.objects} objects")
                    result["objects_per_second"] = args.objects / result["seconds"]
                    if workers:
                        result["per_worker"] = result["objects_per_second"] / workers
                if workers:
                    result["worker_peak_rss_mb"] = round(rss.peak_kb / 1024, 1)
                runs[name] = result
                print(f"[scaleout] {name}: {result}", flush=True)

            if "local" in wanted:
                run("local", [])
            for n in (1, 2):
                if f"ray-{n}" in wanted:
                    run(f"ray-{n}", ["--ray", "--ray-workers", str(n)], workers=n)
            if "resume" in wanted:
                ck = work / "ck"
                run("checkpoint", ["--checkpoint", str(ck)])
                shutil.rmtree(ck)
                run("killed", ["--checkpoint", str(ck)], kill_after=runs["checkpoint"]["seconds"] / 2)
                run("resumed", ["--checkpoint", str(ck)])
                lost = runs["killed"]["seconds"] + runs["resumed"]["seconds"] - runs["checkpoint"]["seconds"]
                runs["resumed"]["time_lost"] = lost
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
        shutil.rmtree(work, ignore_errors=True)
    report(args, runs)


def report(args: argparse.Namespace, runs: dict[str, dict[str, Any]]) -> None:
    lines = [
        f"Scale-out bench, {datetime.now().isoformat(timespec='seconds')}: {args.objects:,} synthetic S3 objects "
        f"at {args.rtt:g} ms RTT, streamed to JSONL by `refscan scan` (this machine: {os.cpu_count()} cores, "
        "shared by the server, the proxy, the driver and the Ray workers).",
        "",
        "| run | wall time | objects/s | per worker | requests | driver CPU | driver peak RSS | worker peak RSS |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in runs.items():
        rate = f"{r['objects_per_second']:,.0f}" if "objects_per_second" in r else "(killed)"
        per = f"{r['per_worker']:,.0f}" if "per_worker" in r else ""
        worker = f"{r['worker_peak_rss_mb']:.0f} MB" if "worker_peak_rss_mb" in r else ""
        lines.append(
            f"| {name} | {r['seconds']:.1f} s | {rate} | {per} | {r['requests']:,} | {r['cpu']:.1f} s | "
            f"{r['peak_rss_mb']:.0f} MB | {worker} |"
        )
    if "resumed" in runs:
        lines += ["", f"Killed at half time and resumed: {runs['resumed']['time_lost']:.1f} s lost."]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scaleout.json").write_text(json.dumps({"objects": args.objects, "rtt_ms": args.rtt, "runs": runs}))
    (args.out / "scaleout.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
