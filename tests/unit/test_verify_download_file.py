"""verify and download end to end on file:// references, plus the fingerprint rules of each backend's codec."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

import pytest

import refscan
from refscan import Manifest, ManifestEntry, PathConflict, UnsafePath
from refscan.backends import backend_class
from refscan.fingerprint import ContentHasher, Fingerprint, Match, compare


@pytest.fixture
def data(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_bytes(b"alpha")
    (src / "sub" / "b.txt").write_bytes(b"bravo")
    return src


def test_verify_ok_changed_missing_unverifiable(data: Path, tmp_path: Path) -> None:
    entries = refscan.scan(str(data))
    entries += refscan.scan(str(data / "a.txt"), name="unchecked", checksum=False)
    path = tmp_path / "m.json"
    Manifest(entries).dump(path)
    report = refscan.verify(path)
    assert report.ok
    assert report.counts == {"ok": 2, "changed": 0, "missing": 0, "unverifiable": 1, "error": 0, "added": 0}

    (data / "a.txt").write_bytes(b"ALPHA")  # same size, new content
    (data / "sub" / "b.txt").unlink()
    report = refscan.verify(str(path))
    by_path = {r.path: r for r in report.results}
    assert by_path["a.txt"].status == "changed"
    assert by_path["a.txt"].expected != by_path["a.txt"].actual
    assert by_path["sub/b.txt"].status == "missing"
    assert by_path["unchecked"].status == "unverifiable"
    assert not report.ok
    assert report.to_dict()["counts"]["changed"] == 1


def test_rescan_reports_objects_added_under_a_folder(data: Path) -> None:
    manifest = Manifest(refscan.scan(str(data)))
    assert refscan.verify(manifest, rescan=[str(data)]).ok  # nothing new yet
    (data / "sub" / "new.txt").write_bytes(b"new")
    report = refscan.verify(manifest, rescan=[f"file://{data}"])
    [added] = [r for r in report.results if r.status == "added"]
    assert (added.path, added.ref) == ("sub/new.txt", f"file://{data}/sub/new.txt")
    assert report.counts["added"] == 1
    assert report.counts["ok"] == 2
    assert not report.ok
    assert refscan.verify(manifest).ok  # without rescan, additions are not looked for


def test_deep_verify_reads_bytes(data: Path) -> None:
    report = refscan.verify(refscan.scan(str(data)), deep=True)
    assert report.counts["ok"] == 2
    assert all("deep check" in r.reason for r in report.results)


def test_download_checks_and_resumes(data: Path, tmp_path: Path) -> None:
    manifest = Manifest(refscan.scan(str(data), name="ds"))
    out = tmp_path / "out"
    written = refscan.download(manifest, out)
    assert written == [out / "ds/a.txt", out / "ds/sub/b.txt"]
    assert (out / "ds/sub/b.txt").read_bytes() == b"bravo"
    before = (out / "ds/a.txt").stat().st_mtime_ns
    refscan.download(manifest, out)  # already present with the right hash: kept
    assert (out / "ds/a.txt").stat().st_mtime_ns == before
    assert sorted(p.name for p in (out / "ds").iterdir()) == ["a.txt", "sub"]  # no temp files left


def test_download_refuses_changed_source(data: Path, tmp_path: Path) -> None:
    manifest = Manifest(refscan.scan(str(data)))
    (data / "a.txt").write_bytes(b"ALPHA")
    with pytest.raises(refscan.DownloadError, match="1 of 2") as info:
        refscan.download(manifest, tmp_path / "out")
    assert isinstance(info.value.failures["a.txt"], refscan.ChecksumMismatch)
    assert not (tmp_path / "out" / "a.txt").exists()
    assert (tmp_path / "out" / "sub" / "b.txt").read_bytes() == b"bravo"


@pytest.mark.parametrize("bad", ["../../etc/x", "/etc/passwd", "a/../../x", "C:/win", "a\\..\\b", "a\x00b", "a//b"])
def test_download_refuses_unsafe_paths_before_writing(bad: str, data: Path, tmp_path: Path) -> None:
    good = refscan.scan(str(data / "a.txt"))[0]
    entries = [good, ManifestEntry(bad, good.digest, ref=good.ref, size=good.size)]
    with pytest.raises(UnsafePath):
        refscan.download(entries, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_download_refuses_file_folder_clash_and_symlinks(data: Path, tmp_path: Path) -> None:
    good = refscan.scan(str(data / "a.txt"))[0]
    clash = [ManifestEntry("obj", good.digest, ref=good.ref), ManifestEntry("obj/inner.txt", good.digest, ref=good.ref)]
    with pytest.raises(PathConflict, match="obj"):
        refscan.download(clash, tmp_path / "out")
    out = tmp_path / "out2"
    out.mkdir()
    (out / "link").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    with pytest.raises(UnsafePath, match="symlink"):
        refscan.download([ManifestEntry("link/x.txt", good.digest, ref=good.ref)], out)


def fingerprint(scheme: str, digest: str, size: int | None, extra: dict[str, Any]) -> Fingerprint:
    """The fingerprint `scheme`'s backend reads from a manifest entry with these fields."""
    backend = backend_class(scheme)
    return backend.fingerprint(backend.decode("key", digest, size, extra))


def md5b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def test_gcs_metadata_only_change_is_same() -> None:
    old = fingerprint("gs", "etag1", 5, {"md5": "m", "crc32c": "c", "versionID": 1, "metageneration": 1})
    new = fingerprint("gs", "etag2", 5, {"md5": "m", "crc32c": "c", "versionID": 1, "metageneration": 2})
    assert compare(old, new) is Match.SAME
    assert compare(old, fingerprint("gs", "etag1", 5, {"md5": "x", "crc32c": "c"})) is Match.DIFFERENT


def test_http_fingerprints() -> None:
    no_validator = fingerprint("https", "https://h/x", 3, {})
    assert not no_validator.provable
    weak = fingerprint("https", 'W/"a"', 3, {"etag": 'W/"a"'})
    assert compare(weak, fingerprint("https", 'W/"b"', 3, {"etag": 'W/"b"'})) is Match.DIFFERENT
    assert compare(weak, fingerprint("https", "a", 3, {"etag": '"a"'})) is Match.UNKNOWN
    assert compare(fingerprint("https", "a", 3, {"etag": '"a"'}), fingerprint("https", "a", 3, {"etag": "a"})) is (
        Match.SAME
    )  # quoted or not, the same strong ETag


def test_size_difference_is_a_change_even_with_equal_etags() -> None:
    one, two = fingerprint("s3", "e", 1, {"etag": "e"}), fingerprint("s3", "e", 2, {"etag": "e"})
    assert compare(one, two) is Match.DIFFERENT


def test_hasher_recomputes_md5_etag_multipart_and_crc32c() -> None:
    data = b"x" * 10 + b"y" * 5
    md5hex = hashlib.md5(data).hexdigest()
    hasher = ContentHasher(fingerprint("s3", md5hex, 15, {"etag": md5hex}))
    hasher.update(data)
    assert hasher.check().match is Match.SAME

    parts = [hashlib.md5(data[:10]).digest(), hashlib.md5(data[10:]).digest()]
    multipart = hashlib.md5(b"".join(parts)).hexdigest() + "-2"
    hasher = ContentHasher(fingerprint("s3", multipart, 15, {"etag": multipart}), part_size=10)
    for i in range(0, 15, 4):  # chunk boundaries that do not align with parts
        hasher.update(data[i : i + 4])
    assert hasher.check().match is Match.SAME
    unknown = ContentHasher(fingerprint("s3", multipart, 15, {"etag": multipart}))
    unknown.update(data)
    assert unknown.check().match is Match.UNKNOWN

    import google_crc32c

    crc = base64.b64encode(google_crc32c.value(data).to_bytes(4, "big")).decode()
    hasher = ContentHasher(fingerprint("gs", "etag", 15, {"crc32c": crc}))
    hasher.update(data)
    assert (hasher.check().match, hasher.check().kind) == (Match.SAME, "crc32c")
    wrong = ContentHasher(fingerprint("gs", "etag", 15, {"md5": md5b64(b"other")}))
    wrong.update(data)
    assert wrong.check().match is Match.DIFFERENT


def test_wandb_written_gcs_entry_verifies_by_generation() -> None:
    """W&B records digest = etag and versionID = generation, no md5/crc32c: the generation proves it."""
    recorded = fingerprint("gs", "CKih", 5, {"etag": "CKih", "versionID": 7})
    live = fingerprint("gs", "CKnew", 5, {"md5": "m", "crc32c": "c", "versionID": 7, "metageneration": 2})
    assert compare(recorded, live) is Match.SAME
    other_generation = fingerprint("gs", "CKih", 5, {"md5": "m", "crc32c": "c", "versionID": 8})
    assert compare(recorded, other_generation) is Match.SAME  # same etag: nothing says it changed
    changed = fingerprint("gs", "CKzz", 5, {"md5": "m", "crc32c": "c", "versionID": 8})
    assert compare(recorded, changed) is Match.DIFFERENT


def test_listing_plan_keeps_outermost_busy_folders() -> None:
    from refscan.verify import LIST_MIN_ENTRIES, listing_plan

    n = LIST_MIN_ENTRIES
    entries = [ManifestEntry(f"a{i}", "e", ref=f"s3://b/data/{i}.bin") for i in range(n)]
    entries += [ManifestEntry(f"s{i}", "e", ref=f"s3://b/data/sub/{i}.bin") for i in range(3)]
    entries += [ManifestEntry(f"g{i}", "e", ref=f"gs://b/x/{i}") for i in range(n - 1)]  # too few to list
    entries += [ManifestEntry("u", "s3://b/data/u", ref="s3://b/data/u")]  # checksum=False: not counted
    entries += [ManifestEntry(f"h{i}", "e", ref=f"https://h/data/{i}") for i in range(n)]  # never listed
    assert listing_plan(entries) == {("s3", "b", "data/"): n + 3}
