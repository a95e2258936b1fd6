"""The command line through its real entry point (`python -m refscan` in a subprocess) against the real servers:
exit codes, machine-readable output, stdout/stderr separation, the local store, the demo, and a progress
bar on a terminal (pty)."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

from refscan import Manifest
from refscan.demo.servers import find_azurite
from tests.servers import GCSServer, NginxServer, S3Server
from tests.servers.util import ServerStartError, isolated_env, unavailable

pytestmark = pytest.mark.integration

PROGRESS_MARKS = ("━", "objects scanned", "verified", "\x1b[")


def refscan(*args: str, env: Mapping[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "refscan", *args],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """The single stderr line of a failed command (asserts there is exactly one and no traceback)."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("refscan: error: "), result.stderr
    return lines[0]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A clean environment: no cloud settings of the developer's, a private store in tmp_path."""
    return isolated_env(tmp_path / "home")


@pytest.fixture
def s3_cli_env(env: dict[str, str], s3_server: S3Server) -> dict[str, str]:
    return env | s3_server.env


@pytest.fixture
def all_cli_env(s3_cli_env: dict[str, str], gcs_server: GCSServer) -> dict[str, str]:
    return s3_cli_env | gcs_server.env


# -- scan ---------------------------------------------------------------------------------------------------


def test_scan_json_and_jsonl_on_a_pipe(s3_cli_env: dict[str, str], s3_server: S3Server, s3_bucket: str) -> None:
    objects = {f"data/{i:02d}.bin": os.urandom(i + 1) for i in range(12)}
    s3_server.put_objects(s3_bucket, objects)

    result = refscan("scan", f"s3://{s3_bucket}/data", "--format", "json", env=s3_cli_env)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # a pipe: no progress bar, no chatter
    manifest = Manifest.from_dict(json.loads(result.stdout))
    assert sorted(e.path for e in manifest) == sorted(k.removeprefix("data/") for k in objects)
    assert all(
        e.ref == f"s3://{s3_bucket}/data/{e.path}" and e.size == len(objects[f"data/{e.path}"]) for e in manifest
    )

    lines = refscan("scan", f"s3://{s3_bucket}/data", "--format", "jsonl", env=s3_cli_env).stdout.splitlines()
    rows = [json.loads(line) for line in lines]
    assert sorted(r["path"] for r in rows) == sorted(e.path for e in manifest)
    assert {r["path"]: r["digest"] for r in rows} == {e.path: e.digest for e in manifest}


def test_logs_go_to_stderr_and_results_to_stdout(
    s3_cli_env: dict[str, str], s3_server: S3Server, s3_bucket: str
) -> None:
    s3_server.put_objects(s3_bucket, {"one.txt": b"1"})
    result = refscan("-v", "--log-format", "json", "scan", f"s3://{s3_bucket}/one.txt", env=s3_cli_env)
    assert result.returncode == 0, result.stderr
    assert list(Manifest.from_dict(json.loads(result.stdout)).entries) == ["one.txt"]
    events = [json.loads(line) for line in result.stderr.splitlines()]
    assert events
    assert all("event" in e for e in events)
    assert not any(mark in result.stderr for mark in PROGRESS_MARKS)


def test_scan_gcs_and_http(
    env: dict[str, str], gcs_server: GCSServer, gcs_bucket: str, nginx_server: NginxServer, tmp_path: Path
) -> None:
    gcs_server.upload(gcs_bucket, "imgs/a.png", b"png a")
    url = nginx_server.write("cli/readme.txt", "hello")
    out = tmp_path / "m.json"
    args = ("scan", f"gs://{gcs_bucket}/imgs", url, "-o", str(out))
    result = refscan(*args, env=env | gcs_server.env)
    assert (result.returncode, result.stdout) == (0, ""), result.stderr
    entries = Manifest.load(out).entries
    assert sorted(entries) == ["a.png", "readme.txt"]
    assert entries["a.png"].extra["versionID"] > 0
    assert entries["readme.txt"].ref == url


def test_forced_progress_goes_to_stderr(env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "f.txt").write_text("x")
    result = refscan("--progress", "scan", (tmp_path / "f.txt").as_uri(), env=env)
    assert result.returncode == 0, result.stderr
    assert "objects scanned" in result.stderr
    assert json.loads(result.stdout)["contents"]["f.txt"]["size"] == 1


# -- exit codes ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("scan", "bogus://bucket/key"), "unsupported scheme 'bogus'"),
        (("scan", "s3://"), "malformed s3 URI"),
        (("log", "bad name!", "--type", "dataset", "file:///tmp"), "invalid artifact name"),
    ],
)
def test_bad_usage_is_one_line_and_exit_2(env: dict[str, str], args: tuple[str, ...], message: str) -> None:
    result = refscan(*args, env=env)
    assert result.returncode == 2
    assert message in one_line_error(result)
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_click_usage_errors_exit_2(env: dict[str, str]) -> None:
    assert refscan("scan", env=env).returncode == 2
    assert refscan("scan", "file:///x", "--format", "xml", env=env).returncode == 2
    assert refscan("verify", "no-such-file.json", env=env).returncode == 2


def test_verify_exit_codes_follow_drift(
    s3_cli_env: dict[str, str], s3_server: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    s3_server.put_objects(s3_bucket, {"d/a.txt": b"a", "d/b.txt": b"b"})
    manifest = tmp_path / "m.json"
    assert refscan("scan", f"s3://{s3_bucket}/d", "-o", str(manifest), env=s3_cli_env).returncode == 0

    ok = refscan("verify", str(manifest), env=s3_cli_env)
    assert (ok.returncode, ok.stdout.strip(), ok.stderr) == (0, "2 ok", "")

    s3_server.client().put_object(Bucket=s3_bucket, Key="d/a.txt", Body=b"A!")
    drift = refscan("verify", str(manifest), env=s3_cli_env)
    assert drift.returncode == 1
    assert "changed" in drift.stdout
    assert "a.txt" in drift.stdout
    report = json.loads(refscan("verify", "--json", str(manifest), env=s3_cli_env).stdout)
    assert report["ok"] is False
    assert report["counts"]["changed"] == 1
    assert report["counts"]["ok"] == 1

    s3_server.client().delete_object(Bucket=s3_bucket, Key="d/b.txt")
    assert refscan("download", str(manifest), str(tmp_path / "out"), env=s3_cli_env).returncode == 1


def test_missing_demo_extra_prints_a_hint(env: dict[str, str]) -> None:
    code = "import sys; sys.modules['waitress'] = None; from refscan.cli import main; sys.argv[1:] = ['demo']; main()"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 1
    assert "pip install 'refscan[demo]'" in one_line_error(result)


# -- the local store ----------------------------------------------------------------------------------------


def test_log_versions_ls_diff_download(
    all_cli_env: dict[str, str],
    s3_server: S3Server,
    s3_versioned_bucket: str,
    gcs_server: GCSServer,
    gcs_bucket: str,
    nginx_server: NginxServer,
    tmp_path: Path,
) -> None:
    bucket = s3_versioned_bucket
    s3_server.put_objects(bucket, {"images/cat.png": b"cat v1", "images/dog.png": b"dog"})
    gcs_server.upload(gcs_bucket, "labels.csv", b"path,label\n")
    readme = nginx_server.write("cli-store/README.txt", "read me")
    sources = (f"s3://{bucket}/images", "--named", "meta/labels.csv", f"gs://{gcs_bucket}/labels.csv", readme)

    first = refscan("log", "pets", "--type", "dataset", *sources, "--alias", "golden", env=all_cli_env)
    assert (first.returncode, first.stdout, first.stderr) == (0, "pets:v0\n", "")
    s3_server.client().put_object(Bucket=bucket, Key="images/cat.png", Body=b"cat v2")
    assert refscan("log", "pets", "--type", "dataset", *sources, env=all_cli_env).stdout == "pets:v1\n"

    listed = json.loads(refscan("versions", "pets", "--json", env=all_cli_env).stdout)
    assert [(v["ref"], v["entries"]) for v in listed] == [("pets:v0", 4), ("pets:v1", 4)]
    assert "golden" in listed[0]["aliases"]
    assert "latest" in listed[1]["aliases"]
    table = refscan("versions", "pets", env=all_cli_env).stdout
    assert "v0" in table
    assert "golden" in table
    assert listed[1]["digest"] in table

    files = {f["path"]: f for f in json.loads(refscan("ls", "pets:golden", "--json", env=all_cli_env).stdout)}
    assert sorted(files) == ["README.txt", "cat.png", "dog.png", "meta/labels.csv"]
    assert files["cat.png"]["direct_url"].startswith(f"{s3_server.endpoint_url}/{bucket}/images/cat.png?versionId=")
    assert "generation=" in files["meta/labels.csv"]["direct_url"]
    assert files["README.txt"]["direct_url"] == readme

    diff = refscan("diff", "pets:v0", "pets:v1", "--exit-code", env=all_cli_env)
    assert (diff.returncode, diff.stdout) == (1, "~ cat.png\n")

    assert refscan("verify", "pets:v0", env=all_cli_env).returncode == 0  # its pinned version is still there
    out = tmp_path / "pinned"
    fetched = refscan("download", "pets:v0", str(out), env=all_cli_env)
    assert fetched.returncode == 0, fetched.stderr
    assert (out / "cat.png").read_bytes() == b"cat v1"
    assert (out / "meta" / "labels.csv").read_bytes() == b"path,label\n"
    assert (out / "README.txt").read_text() == "read me"

    missing = refscan("ls", "pets:v9", env=all_cli_env)
    assert missing.returncode == 1
    assert "pets:v9" in one_line_error(missing)


def test_log_is_all_or_nothing(env: dict[str, str], tmp_path: Path) -> None:
    """Every SOURCE is scanned together: one that fails, or two that claim one path with different bytes,
    log nothing (not even the store is created), and the error is one line."""
    (tmp_path / "a.txt").write_text("a")
    (tmp_path / "b.txt").write_text("b")
    home = Path(env["REFSCAN_HOME"])

    gone = refscan("log", "pets", "--type", "dataset", str(tmp_path / "a.txt"), str(tmp_path / "nope.txt"), env=env)
    assert (gone.returncode, gone.stdout) == (1, "")
    assert "nope.txt" in one_line_error(gone)

    clash = ("--named", "x.txt", str(tmp_path / "a.txt"), "--named", "x.txt", str(tmp_path / "b.txt"))
    conflict = refscan("log", "pets", "--type", "dataset", *clash, env=env)
    assert (conflict.returncode, conflict.stdout) == (1, "")
    assert "x.txt" in one_line_error(conflict)
    assert not home.exists()

    both = (str(tmp_path / "a.txt"), str(tmp_path / "b.txt"))
    logged = refscan("--progress", "log", "pets", "--type", "dataset", *both, env=env)
    assert (logged.returncode, logged.stdout) == (0, "pets:v0\n"), logged.stderr
    assert "scanning 2 sources" in logged.stderr
    assert refscan("log", "pets", "--type", "dataset", *reversed(both), env=env).stdout == "pets:v0\n"
    assert refscan("log", "pets", "--type", "dataset", "--no-checksum", *both, env=env).stdout == "pets:v1\n"


def test_sources_are_manifest_files_or_store_versions(env: dict[str, str], tmp_path: Path) -> None:
    """A SOURCE naming an existing file is a manifest file, even when it looks like NAME:VER; otherwise
    NAME:VER is looked up in the store; anything else is bad usage (exit 2). The library does the same."""
    from refscan.sources import InvalidSource, open_source

    data = tmp_path / "data.txt"
    data.write_text("data")
    assert refscan("log", "pets", "--type", "dataset", str(data), env=env).stdout == "pets:v0\n"
    manifest = tmp_path / "pets:v7"  # a file whose name looks like a version
    assert refscan("scan", data.as_uri(), "-o", str(manifest), env=env).returncode == 0

    from_store = refscan("diff", "pets:latest", "pets:v0", env=env)
    assert (from_store.returncode, from_store.stdout) == (0, "no differences\n"), from_store.stderr
    in_cwd = subprocess.run(
        [sys.executable, "-m", "refscan.cli", "diff", "pets:v7", "pets:v0"],
        cwd=tmp_path,
        env=env | {"PYTHONPATH": str(Path(__file__).parents[2])},
        capture_output=True,
        text=True,
        check=False,
    )
    assert (in_cwd.returncode, in_cwd.stdout) == (0, "no differences\n"), in_cwd.stderr
    assert refscan("diff", "pets:v7", "pets:v0", env=env).returncode == 1  # no file here: no such version
    assert refscan("verify", "pets", env=env).returncode == 2  # neither a file nor NAME:VER

    home = env["REFSCAN_HOME"]
    found, store = open_source("pets:latest", home=home)
    assert store is not None
    assert store.root == Path(home).absolute()
    assert list(found.entries) == ["data.txt"]
    loaded, no_store = open_source(manifest, home=home)
    assert (list(loaded.entries), no_store) == (["data.txt"], None)
    with pytest.raises(InvalidSource, match="neither a manifest file nor a NAME:VERSION"):
        open_source(str(tmp_path / "missing.json"), home=home)


# -- demo ---------------------------------------------------------------------------------------------------


def test_demo_end_to_end(env: dict[str, str]) -> None:
    try:
        env = env | {"AZURITE_BLOB": find_azurite()}
    except ServerStartError as e:
        unavailable(f"azurite: {e}")
    result = refscan("demo", env=env, timeout=60)  # ~7 s on an idle 2-core machine
    assert result.returncode == 0, result.stdout + result.stderr
    for line in (
        "az://refscan-demo and http://",
        "logged pets:v0 into a temporary store from s3://, gs://, az:// and http:// references (6 entries",
        "azure-images/cat.png",
        "the bucket drifted",
        "5 ok, 1 changed",
        "changed  images/cat.png",
        "6 ok: every recorded version is still there",
        "download pets:v0: 6 files",
        "images/cat.png is the original",
        "servers stopped, temporary files removed",
    ):
        assert line in result.stdout, result.stdout


def test_demo_without_azurite_skips_the_azure_leg(env: dict[str, str], tmp_path: Path) -> None:
    """A machine without Azurite: no azurite-blob on PATH, in the npm prefixes or in $AZURITE_BLOB."""
    home = tmp_path / "bare-home"
    home.mkdir()
    path = os.pathsep.join(d for d in env["PATH"].split(os.pathsep) if not (Path(d) / "azurite-blob").exists())
    env = {k: v for k, v in env.items() if k != "AZURITE_BLOB"} | {"HOME": str(home), "PATH": path}
    result = subprocess.run(
        [sys.executable, "-m", "refscan", "demo"], env=env, cwd=tmp_path, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "az   skipped: azurite-blob not found: npm install --prefix" in result.stdout, result.stdout
    for line in ("from s3://, gs:// and http:// references (4 entries", "4 ok: every recorded version is still there"):
        assert line in result.stdout, result.stdout
    assert "az://" not in result.stdout


# -- a terminal ---------------------------------------------------------------------------------------------


def test_progress_bar_renders_on_a_terminal(env: dict[str, str], tmp_path: Path) -> None:
    """stderr on a pty gets the bar (no --progress needed); stdout, a pipe, still gets clean JSON."""
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(300):
        (folder / f"{i:03d}.txt").write_text(str(i))
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "refscan", "scan", folder.as_uri()],
        env=env | {"TERM": "xterm-256color", "COLUMNS": "100"},
        stdout=subprocess.PIPE,
        stderr=slave,
        text=True,
    )
    os.close(slave)
    terminal = b""
    while True:
        ready, _, _ = select.select([master], [], [], 30)
        assert ready, "no output from refscan on the terminal within 30 s"
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        terminal += chunk
    os.close(master)
    stdout, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    text = terminal.decode("utf-8", errors="replace")
    assert "objects scanned" in text, text
    assert "━" in text, text  # the bar itself
    assert len(json.loads(stdout)["contents"]) == 300
