"""The contenders and the one runner they share.

Every measurement is one child process, so imports and peak RSS are the contender's own: Python contenders
run `python -m bench.contenders '<job json>'` (the child times only the operation, after its imports, and
prints one JSON line), rclone runs as itself (timed from start to exit). Each is started by `bench.spawn`, a
small fresh process that waits for it and reports its `ru_maxrss` (peak RSS) and CPU from `wait4` (started
from the bench directly, a child would report the bench's own peak RSS as its own); requests are counted at
the scenario's proxy.

CPU: a Python child reports the user+sys time of its own process (every thread) spent in the operation, read
with `getrusage(RUSAGE_SELF)` around it, so imports are left out as they are from its time; rclone's is its
whole process (`ru_utime + ru_stime` from `wait4`), start-up included. Both are also kept as the whole
child's CPU (`cpu_process_seconds`).
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

S3_REGION = "us-east-1"
RCLONE_FAST = ("--no-modtime", "--no-mimetype")
RCLONE_LSJSON = "rclone lsjson -R --hash " + " ".join(RCLONE_FAST)


@dataclass(frozen=True)
class Job:
    """One operation for a child: `target` is a folder URI, a file of URLs, or a manifest path."""

    contender: str
    op: str
    backend: str
    target: str
    endpoint: str
    max_objects: int
    manifest_out: str | None = None
    jsonl_out: str | None = None
    access_key: str = "testing"
    secret_key: str = "testing"


@dataclass
class Sample:
    """One measured run."""

    seconds: float | None
    entries: int | None
    requests: int
    connections: int
    rss_mb: float
    error: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    cpu_seconds: float | None = None  # user+sys of the operation (rclone: of its whole process)
    cpu_process_seconds: float | None = None  # user+sys of the whole child process, imports included

    @property
    def cpu_us_per_object(self) -> float | None:
        """The contender's own CPU per object it returned, in microseconds."""
        if self.cpu_seconds is None or not self.entries or self.error:
            return None
        return self.cpu_seconds / self.entries * 1e6


@dataclass(frozen=True)
class ChildResult:
    seconds: float | None
    cpu: float | None
    entries: int | None
    detail: dict[str, Any]


# -- the contenders (parent side) ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Contender:
    """How to run one tool: which ops it has an equivalent for, and its command line."""

    name: str
    ops: Mapping[str, str]  # op -> what the tool does for it
    skips: Mapping[str, str]  # op -> why it cannot take part

    def skip_reason(self, op: str) -> str | None:
        if op in self.ops:
            return None
        return self.skips.get(op, "no equivalent operation")

    def argv(self, job: Job) -> list[str]:
        return [sys.executable, "-m", "bench.contenders", json.dumps(asdict(job))]

    def env(self, job: Job, workdir: Path) -> dict[str, str | None]:
        """Variables to set for the child (None: remove it)."""
        return {}

    def result(self, stdout: str) -> ChildResult:
        """What the child printed; seconds (cpu) None means "use the wall time" ("the whole process's CPU")."""
        line = stdout.strip().splitlines()[-1]
        data = json.loads(line)
        return ChildResult(data["seconds"], data.get("cpu"), data["entries"], data.get("detail", {}))


class WandB(Contender):
    def env(self, job: Job, workdir: Path) -> dict[str, str | None]:
        return {
            "WANDB_MODE": "offline",
            "WANDB_SILENT": "true",
            "WANDB_DIR": str(workdir),
            "WANDB_CACHE_DIR": str(workdir / "cache"),
            "WANDB_DATA_DIR": str(workdir / "data"),
            "WANDB_CONFIG_DIR": str(workdir / "config"),
        }


class Rclone(Contender):
    """`rclone lsjson -R --hash`, configured entirely through RCLONE_CONFIG_* variables."""

    def argv(self, job: Job) -> list[str]:
        bucket_path = job.target.split("://", 1)[1].rstrip("/")
        # without --no-modtime --no-mimetype, rclone HEADs every S3 object for its mtime and content type
        return ["rclone", "lsjson", "-R", "--hash", *RCLONE_FAST, f"bench{job.backend}:{bucket_path}"]

    def env(self, job: Job, workdir: Path) -> dict[str, str | None]:
        config = workdir / "rclone.conf"
        config.touch()
        # its AWS SDK refuses any custom CA bundle for a plain-HTTP endpoint
        env: dict[str, str | None] = {"RCLONE_CONFIG": str(config), "AWS_CA_BUNDLE": None}
        if job.backend == "az":
            # use_emulator signs with Azurite's development key (Shared Key, as refscan does); only with a full
            # http:// endpoint does rclone 1.60 reach it elsewhere than 127.0.0.1:10000 (a bare `endpoint` with
            # an account key turns into https://<account>.<endpoint>)
            prefix = "RCLONE_CONFIG_BENCHAZ_"
            env.update({
                prefix + "TYPE": "azureblob",
                prefix + "USE_EMULATOR": "true",
                prefix + "ENDPOINT": job.endpoint,
            })  # fmt: skip
        elif job.backend == "gs":
            prefix = "RCLONE_CONFIG_BENCHGS_"
            env.update({
                prefix + "TYPE": "google cloud storage",
                prefix + "ANONYMOUS": "true",
                prefix + "ENDPOINT": job.endpoint + "/storage/v1/",
            })  # fmt: skip
        else:
            prefix = f"RCLONE_CONFIG_BENCH{job.backend.upper()}_"
            env.update({
                prefix + "TYPE": "s3",
                prefix + "PROVIDER": "SeaweedFS" if job.backend == "sw" else "Other",
                prefix + "ENDPOINT": job.endpoint,
                prefix + "REGION": S3_REGION,
                prefix + "ACCESS_KEY_ID": job.access_key,
                prefix + "SECRET_ACCESS_KEY": job.secret_key,
                prefix + "FORCE_PATH_STYLE": "true",
            })  # fmt: skip
        return env

    def result(self, stdout: str) -> ChildResult:
        entries = json.loads(stdout or "[]")
        return ChildResult(None, None, sum(1 for e in entries if not e.get("IsDir")), {})


CONTENDERS: dict[str, Contender] = {
    c.name: c
    for c in (
        Contender(
            "refscan",
            ops={
                "scan": "refscan.scan(folder)",
                "urls": "Scanner.scan_many(urls)",
                "verify": "refscan.verify(manifest)",
                "stream": "iter_scan(folder) -> JSONL file",
            },
            skips={},
        ),
        WandB(
            "wandb",
            ops={"scan": "Artifact.add_reference(folder)", "urls": "Artifact.add_reference(url) per URL"},
            skips={
                "verify": "W&B 0.31 has no reference verification",
                "stream": "W&B builds the whole manifest in memory, one HEAD per S3 object (days at 1M)",
            },
        ),
        Rclone(
            "rclone",
            ops={"scan": RCLONE_LSJSON, "stream": RCLONE_LSJSON},
            skips={
                "urls": "rclone cannot look up a list of arbitrary URLs",
                "verify": "no equivalent (rclone check compares two remotes)",
            },
        ),
    )
}


# -- the runner ---------------------------------------------------------------------------------------------


def measure(
    contender: Contender,
    job: Job,
    *,
    env: Mapping[str, str],
    reset_counts: Callable[[], Any],
    timeout: float,
) -> Sample:
    """Run `job` once in a child process; time it, count its requests, read its peak RSS and CPU."""
    with tempfile.TemporaryDirectory(prefix="refscan-bench-child-") as tmp:
        workdir = Path(tmp)
        merged: dict[str, str | None] = {**os.environ, **env, **contender.env(job, workdir)}
        child_env = {k: v for k, v in merged.items() if v is not None}
        out_path, err_path, usage_path = workdir / "stdout", workdir / "stderr", workdir / "usage.json"
        # through bench.spawn, a small fresh process: a child started from this one would inherit its peak RSS
        argv = [sys.executable, "-m", "bench.spawn", str(usage_path), *contender.argv(job)]
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            reset_counts()
            started = time.perf_counter()
            child = subprocess.Popen(
                argv, env=child_env, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                start_new_session=True, cwd=str(Path(__file__).resolve().parent.parent),
            )  # fmt: skip
            try:
                status, rusage, timed_out = _wait(child.pid, started + timeout)
            except BaseException:  # Ctrl-C: never leave the child running
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()
                raise
            wall = time.perf_counter() - started
            child.returncode = status  # already reaped by wait4
            counts = reset_counts()
        rss_mb = rusage.ru_maxrss / 1024 if rusage is not None else 0.0
        process_cpu = rusage.ru_utime + rusage.ru_stime if rusage is not None else None
        if usage_path.exists():  # the contender's own numbers, without the launcher's start-up
            usage = json.loads(usage_path.read_text())
            status, wall = usage["status"], usage["wall"]
            rss_mb, process_cpu = usage["maxrss_kb"] / 1024, usage["cpu"]
        error = None
        if timed_out:
            error = f"timeout: > {timeout:.0f} s"
        elif status != 0:
            tail = err_path.read_text(errors="replace").strip().splitlines()[-3:]
            error = f"exit {status}: {' | '.join(tail)}"
        if error is not None:
            return Sample(
                None, None, counts.requests, counts.connections, rss_mb, error, cpu_process_seconds=process_cpu
            )
        r = contender.result(out_path.read_text(errors="replace"))
        return Sample(
            r.seconds if r.seconds is not None else wall, r.entries, counts.requests, counts.connections, rss_mb,
            detail=r.detail, cpu_seconds=r.cpu if r.cpu is not None else process_cpu, cpu_process_seconds=process_cpu,
        )  # fmt: skip


def _wait(pid: int, deadline: float) -> tuple[int, Any, bool]:
    """wait4 until the child exits or `deadline`; on timeout kill its process group. (status, rusage, timed out)"""
    while True:
        done, status, rusage = os.wait4(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status), rusage, False
        if time.perf_counter() > deadline:
            os.killpg(pid, signal.SIGKILL)
            _, status, rusage = os.wait4(pid, 0)
            return os.waitstatus_to_exitcode(status), rusage, True
        time.sleep(0.02)


# -- the child side: one operation, timed after the imports -------------------------------------------------


class Clock:
    """Wall and CPU time (user+sys of this process, all threads) of the block it wraps."""

    seconds = 0.0
    cpu = 0.0

    @staticmethod
    def _cpu() -> float:
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    def __enter__(self) -> Clock:
        self._wall, self._cpu0 = time.perf_counter(), self._cpu()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._wall
        self.cpu = self._cpu() - self._cpu0


Measured = tuple[Clock, int, dict[str, Any]]


def _refscan_options(job: Job) -> Any:
    import refscan

    if job.backend == "az":  # Azurite's development account behind the proxy (`endpoint` ends in the account)
        connection = (
            f"DefaultEndpointsProtocol=http;AccountName={job.access_key};AccountKey={job.secret_key};"
            f"BlobEndpoint={job.endpoint};"
        )
        return refscan.Options(azure=refscan.AzureOptions(connection_string=connection))
    if job.backend == "gs":
        return refscan.Options(gcs=refscan.GCSOptions(endpoint_url=job.endpoint, token="anon", project="test"))
    return refscan.Options(
        s3=refscan.S3Options(
            endpoint_url=job.endpoint,
            region=S3_REGION,
            aws_access_key_id=job.access_key,
            aws_secret_access_key=job.secret_key,
        )
    )


def _urls(job: Job) -> list[str]:
    return Path(job.target).read_text().split()


def run_refscan(job: Job) -> Measured:
    import refscan

    options = _refscan_options(job)
    if job.op == "scan":
        with Clock() as clock:
            entries = refscan.scan(job.target, max_objects=job.max_objects, options=options)
        if job.manifest_out:
            manifest = refscan.Manifest()
            for e in entries:
                manifest.add(e)
            manifest.dump(job.manifest_out)
        return clock, len(entries), {}
    if job.op == "urls":
        urls = _urls(job)

        async def scan_all() -> list[list[refscan.ManifestEntry]]:
            async with refscan.Scanner(options) as scanner:
                return await scanner.scan_many(urls)

        with Clock() as clock:
            results = asyncio.run(scan_all())
        return clock, sum(len(r) for r in results), {}
    if job.op == "verify":
        manifest = refscan.Manifest.load(job.target)
        with Clock() as clock:
            report = refscan.verify(manifest, options=options)
        return clock, len(report.results), {"counts": report.counts}
    if job.op == "stream":
        assert job.jsonl_out is not None

        async def stream(out: TextIO) -> int:
            count = 0
            async for e in refscan.iter_scan(job.target, max_objects=job.max_objects, options=options):
                out.write(json.dumps({"path": e.path, **e.to_dict()}) + "\n")
                count += 1
            return count

        with open(job.jsonl_out, "w", encoding="utf-8") as out, Clock() as clock:
            count = asyncio.run(stream(out))
        return clock, count, {}
    raise ValueError(job.op)


def run_wandb(job: Job) -> Measured:
    import wandb

    artifact = wandb.Artifact("bench", type="dataset")
    targets = _urls(job) if job.op == "urls" else [job.target]
    with Clock() as clock:
        for target in targets:
            artifact.add_reference(target, max_objects=job.max_objects)
    return clock, len(artifact.manifest.entries), {}


def main(argv: list[str] | None = None) -> None:
    job = Job(**json.loads((argv or sys.argv[1:])[0]))
    run = {"refscan": run_refscan, "wandb": run_wandb}[job.contender]
    clock, entries, detail = run(job)
    print(json.dumps({"seconds": clock.seconds, "cpu": clock.cpu, "entries": entries, "detail": detail}), flush=True)


if __name__ == "__main__":
    main()
