"""Security without servers: downloads stay inside their folder, manifests read from disk are validated, and
nothing evaluates or unpickles its input. (Secret redaction, which needs servers, is in
tests/integration/test_secrets.py.)
"""

from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

import refscan
from refscan import Manifest, ManifestEntry, ManifestError, UnsafePath
from refscan.download import safe_target
from refscan.fingerprint import Fingerprint
from tests.servers.util import isolated_env

REPO = Path(__file__).resolve().parents[2]


# -- download path containment ------------------------------------------------------------------------------------


@pytest.fixture
def source_file(tmp_path: Path) -> ManifestEntry:
    src = tmp_path / "src" / "a.txt"
    src.parent.mkdir()
    src.write_bytes(b"alpha")
    [entry] = refscan.scan(str(src))
    return entry


@pytest.mark.parametrize(
    "bad",
    [
        "..",
        ".",
        "./a",
        "a/.",
        "a/",
        "a/b/../../../x",
        "//etc/passwd",
        "c:x",
        "\\\\server\\share\\x",
        "a\\b",
        "x\x00/../y",
        "",
    ],
)
def test_download_refuses_more_unsafe_paths(bad: str, source_file: ManifestEntry, tmp_path: Path) -> None:
    entries = [source_file, ManifestEntry(bad, source_file.digest, ref=source_file.ref, size=source_file.size)]
    with pytest.raises(UnsafePath):
        refscan.download(entries, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("path", ["données/ü.txt", "\uff0e\uff0e/x", "...", "..a/b..", "a b/c#d?e", " /x"])
def test_download_keeps_odd_but_safe_names_inside_root(path: str, source_file: ManifestEntry, tmp_path: Path) -> None:
    root = tmp_path / "out"
    [written] = refscan.download([ManifestEntry(path, source_file.digest, ref=source_file.ref)], root)
    assert written == safe_target(root, path)
    assert written.resolve().is_relative_to(root.resolve())
    assert written.read_bytes() == b"alpha"


def test_download_refuses_a_symlink_as_the_final_component(source_file: ManifestEntry, tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"keep me")
    root = tmp_path / "out"
    root.mkdir()
    (root / "a.txt").symlink_to(outside)
    with pytest.raises(UnsafePath, match="symlink"):
        refscan.download([ManifestEntry("a.txt", source_file.digest, ref=source_file.ref)], root)
    assert outside.read_bytes() == b"keep me"


def test_download_refuses_a_folder_swapped_for_a_symlink_after_planning(
    source_file: ManifestEntry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The plan is checked before anything is written; a folder replaced by a symlink while the download runs
    is caught again right before the file is created."""
    download_module = importlib.import_module("refscan.download")  # `refscan.download` is also a function

    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "out"
    (root / "sub").mkdir(parents=True)
    original = download_module._holds

    def swap_then_check(path: Path, expected: Fingerprint, part_size: int | None) -> bool:
        if (root / "sub").is_dir() and not (root / "sub").is_symlink():
            (root / "sub").rmdir()
            (root / "sub").symlink_to(outside, target_is_directory=True)
        return bool(original(path, expected, part_size))

    monkeypatch.setattr(download_module, "_holds", swap_then_check)
    entry = ManifestEntry("sub/a.txt", source_file.digest, ref=source_file.ref)
    with pytest.raises(refscan.DownloadError) as info:
        refscan.download([entry], root)
    assert isinstance(info.value.failures["sub/a.txt"], UnsafePath)
    assert list(outside.iterdir()) == []


# -- manifests read from disk -----------------------------------------------------------------------------------

DEEP = b'{"contents": {"a": {"digest": "x", "extra": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}}"


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        pytest.param(b"{not json", "not valid JSON", id="bad-json"),
        pytest.param(b"\xff\xfe{}", "cannot read", id="not-utf8"),
        pytest.param(DEEP, "nested too deeply", id="deeply-nested"),
        pytest.param(
            b'{"contents": {"a": {"digest": "x", "size": 1' + b"0" * 5000 + b"}}}", "not valid", id="5000-digits"
        ),
        pytest.param(b'{"contents": {"a": {"digest": "x"}, "a": {"digest": "y"}}}', "'a' twice", id="duplicate-path"),
        pytest.param(b'{"version": 1, "version": 2, "contents": {}}', "'version' twice", id="duplicate-key"),
        pytest.param(b"[]", "must be a JSON object", id="top-level-list"),
        pytest.param(b'"contents"', "must be a JSON object", id="top-level-string"),
        pytest.param(b'{"version": NaN, "contents": {}}', "unsupported manifest version", id="nan-version"),
        pytest.param(b'{"contents": []}', "no 'contents' object", id="contents-list"),
        pytest.param(b'{"contents": {"a": {"digest": "x", "size": 1e400}}}', "non-negative integer", id="inf-size"),
        pytest.param(
            b'{"contents": {"a": {"digest": "x", "size": 4611686018427387905}}}', "size", id="size-over-2**62"
        ),
        pytest.param(b'{"contents": {"a": {"digest": "x", "size": -1}}}', "size must be", id="negative-size"),
        pytest.param(b'{"contents": {"a": {"digest": "x", "size": "12"}}}', "size must be", id="string-size"),
        pytest.param(b'{"contents": {"a": {"digest": 12}}}', "digest must be a string", id="int-digest"),
        pytest.param(b'{"contents": {"a": {"digest": "x", "ref": ["s3://b/k"]}}}', "ref must be", id="list-ref"),
        pytest.param(b'{"contents": {"a": {"digest": "x", "extra": "etag"}}}', "extra must be", id="string-extra"),
        pytest.param(b'{"contents": {"a": "digest"}}', "is not an object", id="entry-not-object"),
    ],
)
def test_hostile_manifest_files_raise_a_clear_manifest_error(content: bytes, needle: str, tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    path.write_bytes(content)
    with pytest.raises(ManifestError, match=needle):
        Manifest.load(path)
    with pytest.raises(ManifestError):
        refscan.verify(path)
    with pytest.raises(ManifestError):
        refscan.download(path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_manifests_written_by_wandb_still_load(tmp_path: Path) -> None:
    path = tmp_path / "wandb.json"
    data = {
        "version": 1,
        "storagePolicy": "wandb-storage-policy-v1",
        "storagePolicyConfig": {"storageLayout": "V2"},
        "contents": {
            "a.txt": {"digest": "x", "ref": "s3://b/a.txt", "size": 0, "extra": {"etag": "x"}, "birthArtifactID": None}
        },
    }
    path.write_text(json.dumps(data))
    assert [e.path for e in Manifest.load(path)] == ["a.txt"]


def test_cli_reports_a_hostile_manifest_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "deep.json"
    path.write_bytes(b'{"contents": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")
    for command in (["verify", str(path)], ["download", str(path), str(tmp_path / "out")]):
        result = subprocess.run(
            [sys.executable, "-m", "refscan", *command],
            env=isolated_env(tmp_path / "home"),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 1
        assert result.stderr.strip().splitlines() == [
            f"refscan: error: manifest {str(path)!r} is nested too deeply to be a manifest"
        ]
    assert not (tmp_path / "out").exists()


# -- no shell, eval or pickle on input ---------------------------------------------------------------------------

FORBIDDEN_MODULES = {"pickle", "cPickle", "_pickle", "marshal", "shelve", "dill", "cloudpickle", "yaml", "jsonpickle"}
FORBIDDEN_BUILTINS = {"eval", "exec", "compile", "__import__"}
FORBIDDEN_OS = {"system", "popen", "execl", "execlp", "execv", "execvp", "execve", "spawnl", "spawnv", "startfile"}


def audit(source: str, where: str) -> list[str]:
    """Calls and imports that could run or unpickle input: eval/exec/compile, os.system and friends, pickle-like
    modules, and `shell=` anything but False."""
    problems: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names]
            if isinstance(node, ast.ImportFrom) and node.module:
                names.append(node.module)
            problems += [f"{where}:{node.lineno} imports {n}" for n in names if n.split(".")[0] in FORBIDDEN_MODULES]
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id in FORBIDDEN_BUILTINS:
            problems.append(f"{where}:{node.lineno} calls {func.id}()")
        if isinstance(func, ast.Attribute) and func.attr in FORBIDDEN_OS:
            problems.append(f"{where}:{node.lineno} calls {ast.unparse(func)}()")
        for kw in node.keywords:
            if kw.arg == "shell" and not (isinstance(kw.value, ast.Constant) and kw.value.value is False):
                problems.append(f"{where}:{node.lineno} passes shell={ast.unparse(kw.value)}")
    return problems


def test_no_shell_eval_exec_or_pickle_in_refscan() -> None:
    sources = sorted((REPO / "refscan").rglob("*.py"))
    assert len(sources) > 20
    problems = [p for path in sources for p in audit(path.read_text(), str(path.relative_to(REPO)))]
    assert problems == []


def test_the_audit_flags_what_it_looks_for() -> None:
    bad = (
        "import pickle\nfrom yaml import load\nimport subprocess, os\neval(x)\nexec(y)\n"
        "subprocess.run(c, shell=True)\nsubprocess.Popen(c, shell=flag)\nos.system(c)\nsubprocess.run(['ls'])\n"
    )
    assert len(audit(bad, "bad.py")) == 7
    assert audit("subprocess.run(['ls'], shell=False)\njson.loads(s)\n", "good.py") == []
