"""Planned scans and verifies (refscan.distributed) on real servers: key ranges in this process and on a
local Ray, and checkpoints that survive SIGKILL.

- Local executor: a moto folder of 3,500 objects (pages of 100, so it is split and re-split), a GCS folder, and
  a SeaweedFS bucket root whose directory order breaks key positions (the driver restarts it as one chain):
  the same entries as a plain scan; `max_objects` exact (n passes, n - 1 raises).
- Checkpoints (CLI, behind a latency proxy): a scan killed with SIGKILL mid-way finishes on the rerun with
  exactly the lines an uninterrupted run writes, listing less than a whole run does; a finished checkpoint
  reruns without a single request; a checkpoint of other work or a damaged file is one clear error, exit 1.
- Ray (marked `ray`, one local Ray per module on 127.0.0.1): scan and verify equal the local results, the
  limit holds, a missing bucket raises NotFound as itself, and the CLI's `--ray` starts and stops its own
  Ray; without the package `--ray` fails with the install hint.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

import refscan
from refscan import GCSOptions, NotFound, Options, S3Options, TooManyObjects
from refscan.backends.gcs import GCSBackend
from refscan.backends.s3 import listing as s3_listing
from refscan.distributed import LocalExecutor, RayExecutor
from tests.faults import FaultPlan, FaultProxy, is_listing
from tests.integration.test_seaweedfs import opts as seaweed_opts
from tests.servers import GCSServer, S3Server
from tests.servers.s3 import ACCESS_KEY, REGION, SECRET_KEY
from tests.servers.seaweed import SeaweedFSServer

pytestmark = pytest.mark.integration

OBJECTS = 3_500


def s3_opts(endpoint: str) -> Options:
    return Options(
        s3=S3Options(
            endpoint_url=endpoint,
            region=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            addressing_style="path",
        )
    )


@pytest.fixture(scope="module")
def flat(s3_server: S3Server) -> str:
    bucket = s3_server.create_bucket()
    objects = {f"flat/obj-{i:05d}.bin": f"object {i}".encode() for i in range(OBJECTS)}
    s3_server.put_objects(bucket, objects | {"flat2/not-me": b"x", "flat/": b""}, workers=24)
    return bucket


@pytest.fixture(scope="module")
def proxy(s3_server: S3Server) -> Iterator[FaultProxy]:
    with FaultProxy(s3_server.endpoint_url, flavor="s3", cache=lambda _: True) as p:
        yield p


# -- the local executor ------------------------------------------------------------------------------------------


def test_local_executor_equals_a_plain_scan(s3_server: S3Server, flat: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(s3_listing, "PAGE", 100)
    o = s3_opts(s3_server.endpoint_url)
    plain = refscan.scan(f"s3://{flat}/flat", options=o)
    assert len(plain) == OBJECTS
    with structlog.testing.capture_logs() as logs:
        planned = refscan.scan(f"s3://{flat}/flat", options=o, executor=LocalExecutor())
    assert planned == plain
    assert refscan.scan(f"s3://{flat}/flat", options=o, executor=LocalExecutor(), max_objects=OBJECTS) == plain
    with pytest.raises(TooManyObjects, match=f"Exceeded {OBJECTS - 1} objects"):
        refscan.scan(f"s3://{flat}/flat", options=o, executor=LocalExecutor(), max_objects=OBJECTS - 1)
    one = f"s3://{flat}/flat/obj-00007.bin"
    assert refscan.scan(one, options=o, executor=LocalExecutor()) == refscan.scan(one, options=o)
    with pytest.raises(NotFound):
        refscan.scan(f"s3://{flat}/nothing-here", options=o, executor=LocalExecutor())
    assert not [e for e in logs if e["log_level"] == "warning"]


def test_local_executor_on_gcs(gcs_server: GCSServer, gcs_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(GCSBackend, "page_size", 50)
    bucket = gcs_server.create_bucket()
    gcs_server.upload_many(bucket, {f"d/{i:04d}.txt": f"g {i}".encode() for i in range(600)} | {"d2/x": b"n"})
    o = Options(gcs=GCSOptions(endpoint_url=gcs_server.endpoint_url))
    plain = refscan.scan(f"gs://{bucket}/d", options=o)
    assert len(plain) == 600
    assert refscan.scan(f"gs://{bucket}/d", options=o, executor=LocalExecutor()) == plain


def test_a_directory_ordered_store_is_listed_again_as_one_chain(
    seaweed_server: SeaweedFSServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SeaweedFS lists `a/...` before `a-c`: positions guessed after a split break S3's order, and the driver
    restarts the bucket root as one chain of the store's own tokens, producing each object once."""
    monkeypatch.setattr(s3_listing, "PAGE", 100)
    bucket = seaweed_server.create_bucket()
    objects = {f"a/{i:04d}": b"a" for i in range(450)} | {"a-c": b"c", "a.d": b"d", "a0": b"0", "b/x": b"b"}
    seaweed_server.put_objects(bucket, objects, workers=8)
    o = seaweed_opts(seaweed_server)
    with structlog.testing.capture_logs() as logs:
        planned = refscan.scan(f"s3://{bucket}", options=o, executor=LocalExecutor())
    assert sorted(e.path for e in planned) == sorted(objects)
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == ["scan.sequential"]
    assert planned == refscan.scan(f"s3://{bucket}", options=o)


# -- checkpoints ---------------------------------------------------------------------------------------------------


def cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "refscan", *args],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def env(proxy: FaultProxy, s3_server: S3Server, tmp_path: Path) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "GOOGLE_", "STORAGE_EMULATOR", "RAY_"))}
    return base | {
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_REGION": REGION,
        "AWS_ENDPOINT_URL_S3": proxy.url,
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        "AWS_EC2_METADATA_DISABLED": "true",
        "REFSCAN_HOME": str(tmp_path / "home"),
        "RAY_AUTH_MODE": "disabled",
    }


def lines(path: Path) -> list[str]:
    return sorted(path.read_text().splitlines())


def done_units(checkpoint: Path) -> int:
    try:
        with sqlite3.connect(f"file:{checkpoint / 'checkpoint.sqlite'}?mode=ro", uri=True) as db:
            return int(db.execute("SELECT COUNT(*) FROM units WHERE state = 'done'").fetchone()[0])
    except sqlite3.Error:
        return 0


def test_a_killed_scan_resumes_from_its_checkpoint(
    proxy: FaultProxy, flat: str, env: dict[str, str], tmp_path: Path
) -> None:
    args = ["scan", f"s3://{flat}/flat", "--format", "jsonl"]
    proxy.configure(FaultPlan())
    whole = cli([*args, "-o", "whole.jsonl"], env, tmp_path)
    assert whole.wait(120) == 0, whole.communicate()[1]
    uninterrupted = lines(tmp_path / "whole.jsonl")
    assert len(uninterrupted) == OBJECTS
    full_listing = proxy.configure(FaultPlan(latency=1.0, match=is_listing)).requests

    ck = tmp_path / "ck"
    victim = cli([*args, "-o", "out.jsonl", "--checkpoint", str(ck)], env, tmp_path)
    deadline = time.monotonic() + 60
    while done_units(ck) < 2 and time.monotonic() < deadline:  # the lookup and the folder's first page
        time.sleep(0.02)
    victim.send_signal(signal.SIGKILL)
    victim.communicate(timeout=30)
    assert victim.returncode == -signal.SIGKILL  # killed mid-way, with ranges in flight
    assert done_units(ck) >= 2
    assert not (tmp_path / "out.jsonl").exists()

    proxy.configure(FaultPlan())
    rerun = cli([*args, "-o", "out.jsonl", "--checkpoint", str(ck)], env, tmp_path)
    _, stderr = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, stderr
    assert lines(tmp_path / "out.jsonl") == uninterrupted
    resumed = proxy.configure(FaultPlan()).requests
    assert resumed < full_listing  # the finished ranges were not listed again

    again = cli([*args, "-o", "again.jsonl", "--checkpoint", str(ck)], env, tmp_path)
    assert again.wait(60) == 0
    assert lines(tmp_path / "again.jsonl") == uninterrupted
    assert proxy.stats().requests == 0  # a finished checkpoint is only read back


def test_a_checkpoint_of_other_work_or_damaged_is_one_error(
    proxy: FaultProxy, flat: str, env: dict[str, str], tmp_path: Path
) -> None:
    proxy.configure(FaultPlan())
    ck = tmp_path / "ck"
    first = cli(["scan", f"s3://{flat}/flat/obj-00001.bin", "--checkpoint", str(ck)], env, tmp_path)
    assert first.wait(60) == 0
    other = cli(["scan", f"s3://{flat}/flat/obj-00002.bin", "--checkpoint", str(ck)], env, tmp_path)
    out, err = other.communicate(timeout=60)
    assert other.returncode == 1
    assert out == ""
    assert err.strip().startswith("refscan: error: ")
    assert "belongs to other work" in err
    assert f"s3://{flat}/flat/obj-00001.bin" in err
    assert len(err.strip().splitlines()) == 1

    (ck / "checkpoint.sqlite").write_bytes(b"this is not a database" * 100)
    for suffix in ("-wal", "-shm"):
        (ck / f"checkpoint.sqlite{suffix}").unlink(missing_ok=True)
    damaged = cli(["scan", f"s3://{flat}/flat/obj-00001.bin", "--checkpoint", str(ck)], env, tmp_path)
    out, err = damaged.communicate(timeout=60)
    assert (damaged.returncode, out) == (1, "")
    assert "not a usable refscan checkpoint" in err
    assert len(err.strip().splitlines()) == 1


# -- Ray ------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One local Ray for the module, on loopback, with its own short temp folder."""
    ray = pytest.importorskip("ray") if os.environ.get("CI") != "true" else __import__("ray")
    os.environ["RAY_AUTH_MODE"] = "disabled"
    tmp = Path("/tmp") / f"rs-ray-{os.getpid()}"
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        _temp_dir=str(tmp),
        logging_level="ERROR",
        log_to_driver=False,
    )
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.mark.ray
def test_ray_scan_and_verify_equal_the_local_ones(s3_server: S3Server, flat: str, local_ray: Any) -> None:
    o = s3_opts(s3_server.endpoint_url)
    plain = refscan.scan(f"s3://{flat}/flat", options=o)
    assert refscan.scan(f"s3://{flat}/flat", options=o, executor=RayExecutor(workers=2)) == plain
    assert refscan.scan(f"s3://{flat}/flat", options=o, executor=RayExecutor(), max_objects=OBJECTS) == plain
    with pytest.raises(TooManyObjects, match=f"Exceeded {OBJECTS - 1} objects"):
        refscan.scan(f"s3://{flat}/flat", options=o, executor=RayExecutor(), max_objects=OBJECTS - 1)
    with pytest.raises(NotFound):
        refscan.scan("s3://no-such-bucket-here/x/", options=o, executor=RayExecutor())

    local = refscan.verify(plain, options=o)
    remote = refscan.verify(plain, options=o, executor=RayExecutor(workers=2))
    assert remote.to_dict() == local.to_dict()
    assert remote.ok
    assert local_ray.is_initialized()  # a Ray the caller started is left running


@pytest.mark.ray
def test_cli_ray_starts_and_stops_its_own_ray(
    flat: str, env: dict[str, str], proxy: FaultProxy, tmp_path: Path
) -> None:
    pytest.importorskip("ray") if os.environ.get("CI") != "true" else None
    proxy.configure(FaultPlan())
    run = cli(
        ["scan", f"s3://{flat}/flat", "--format", "jsonl", "--ray", "--ray-workers", "1", "-o", "ray.jsonl"],
        env | {"RAY_TMPDIR": str(Path("/tmp") / f"rs-cli-{os.getpid()}")},
        tmp_path,
    )
    _, err = run.communicate(timeout=180)
    assert run.returncode == 0, err
    got = [json.loads(line) for line in (tmp_path / "ray.jsonl").read_text().splitlines()]
    assert sorted(g["path"] for g in got) == [f"obj-{i:05d}.bin" for i in range(OBJECTS)]


def test_ray_without_the_package_fails_with_the_install_hint(env: dict[str, str], tmp_path: Path) -> None:
    code = "import sys; sys.modules['ray'] = None; from refscan.cli import main; sys.argv = sys.argv[1:]; main()"
    run = subprocess.run(
        [sys.executable, "-c", code, "refscan", "scan", "s3://bucket-x/key", "--ray"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 1
    assert "pip install 'refscan[ray]'" in run.stderr
