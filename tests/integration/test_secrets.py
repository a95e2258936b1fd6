"""Secrets never leave refscan: not in logs, errors, manifests, reports or CLI output.

Secrets are checked where users would see them: structlog events (`capture_logs`) and stdlib logging, exception
messages and their whole chain (`traceback.format_exception`), manifests and verify reports (JSON), and the
CLI's stdout/stderr with `-v --log-format json`. Servers are small aiohttp apps on 127.0.0.1 that record what
they receive, so every test also proves the secrets were really in use.
"""

from __future__ import annotations

import base64
import json
import logging
import subprocess
import sys
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from aiohttp import web
from structlog.testing import capture_logs

import refscan
from refscan import (
    AccessDenied,
    BackendError,
    HTTPOptions,
    InvalidURI,
    Manifest,
    ManifestEntry,
    NotFound,
    Options,
    RefscanError,
    S3Options,
)
from tests.servers.util import free_port, isolated_env

REPO = Path(__file__).resolve().parents[2]

PASSWORD = "pw-Zq9-SECRET-basic"
BEARER = "Bearer tok-Zq9-SECRET-bearer"
SIGNATURES = {
    "X-Amz-Signature": "ZQ9amzsignatureSECRET",
    "X-Amz-Credential": "ZQ9AKIACREDSECRET/20240101/us-east-1/s3/aws4_request",
    "X-Amz-Security-Token": "ZQ9securitytokenSECRET",
    "X-Goog-Signature": "ZQ9googsignatureSECRET",
    "X-Goog-Credential": "ZQ9googcredSECRET@project.iam",
    "Signature": "ZQ9cloudfrontSECRET",
    "sig": "ZQ9azuresasSECRET",
}
AWS_KEY_ID = "AKIAZQ9SECRETKEYID77"
AWS_SECRET_KEY = "ZQ9aws/secret+ACCESS/key0123456789SECRET"
AWS_TOKEN = "ZQ9sessionTOKEN+SECRET/abc=="
SECRETS = (PASSWORD, BEARER.split()[1], AWS_KEY_ID, AWS_SECRET_KEY, AWS_TOKEN, *SIGNATURES.values())


def leaks(*texts: str) -> list[str]:
    """The secrets (or their percent-encoded forms) found in `texts`."""
    from urllib.parse import quote

    found = []
    for secret in SECRETS:
        for form in {secret, quote(secret, safe=""), quote(secret, safe="/")}:
            if any(form in text for text in texts):
                found.append(secret)
    return found


def presigned(base: str, path: str, *, user: bool = True) -> str:
    query = "&".join(f"{k}={v.replace('/', '%2F').replace('@', '%40')}" for k, v in SIGNATURES.items())
    netloc = base.removeprefix("http://")
    auth = f"alice:{PASSWORD}@" if user else ""
    return f"http://{auth}{netloc}/{path}?keep=1&{query}"


def error_texts(exc: BaseException) -> list[str]:
    """Everything a user could see of an exception: message, repr, and the formatted chain."""
    texts = [str(exc), repr(exc), "".join(traceback.format_exception(exc))]
    failures = getattr(exc, "failures", None)
    if isinstance(failures, dict):
        for inner in failures.values():
            texts.extend(error_texts(inner))
    return texts


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> Iterator[list[dict[str, Any]]]:
    """structlog events at every level (captured) plus the stdlib "refscan" logger at DEBUG (caplog)."""
    old = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
    caplog.set_level(logging.DEBUG, logger="refscan")
    try:
        with capture_logs() as events:
            yield events
    finally:
        structlog.configure(**old)


# -- a recording HTTP server -------------------------------------------------------------------------------------


def http_app(seen: list[dict[str, str]]) -> web.Application:
    async def handler(request: web.Request) -> web.StreamResponse:
        seen.append(dict(request.headers))
        name = request.path.rsplit("/", 1)[-1]
        if name == "ok.bin":
            return web.Response(body=b"hello" if request.method == "GET" else None, headers={"ETag": '"abc123"'})
        if name == "missing.bin":
            return web.Response(status=404)
        if name == "denied.bin":
            return web.Response(status=403)
        return web.Response(status=503, headers={"Retry-After": "0"})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    return app


def s3_app(seen: list[dict[str, str]]) -> web.Application:
    """Just enough S3 for a HEAD, a folder listing and the errors real S3 gives (with the key id in the body)."""
    ns = 'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"'

    async def handler(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        path, query = request.path, request.query
        if "versioning" in query:
            return web.Response(text=f"<VersioningConfiguration {ns}/>", content_type="application/xml")
        if "list-type" in query and query.get("prefix", "").startswith("data/"):
            contents = (
                "<Contents><Key>data/a.txt</Key><LastModified>2024-01-01T00:00:00.000Z</LastModified>"
                '<ETag>"900150983cd24fb0d6963f7d28e17f72"</ETag><Size>3</Size></Contents>'
            )
            body = f"<ListBucketResult {ns}><Name>bk</Name><IsTruncated>false</IsTruncated>{contents}"
            return web.Response(text=body + "</ListBucketResult>", content_type="application/xml")
        if "list-type" in query and query.get("prefix") != "x/":
            body = f"<ListBucketResult {ns}><Name>bk</Name><IsTruncated>false</IsTruncated></ListBucketResult>"
            return web.Response(text=body, content_type="application/xml")
        if "list-type" in query:  # a key id the store does not know: real S3 echoes it in the error body
            body = (
                "<Error><Code>InvalidAccessKeyId</Code><Message>The AWS Access Key Id you provided does not exist "
                f"in our records.</Message><AWSAccessKeyId>{AWS_KEY_ID}</AWSAccessKeyId></Error>"
            )
            return web.Response(status=403, text=body, content_type="application/xml")
        if path == "/bk/ok.txt":
            return web.Response(headers={"ETag": '"900150983cd24fb0d6963f7d28e17f72"', "Content-Length": "3"})
        if path == "/bk/flaky.txt":
            return web.Response(status=503)
        return web.Response(status=404)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    return app


# -- redaction: library ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("auth_header", [True, False], ids=["authorization-header", "url-basic-auth"])
def test_http_secrets_never_reach_logs_errors_or_manifests(
    auth_header: bool,
    serve_app: Callable[[web.Application], str],
    debug_logs: list[dict[str, Any]],
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    seen: list[dict[str, str]] = []
    base = serve_app(http_app(seen))
    headers = {"Authorization": BEARER} if auth_header else {}
    options = Options(http=HTTPOptions(headers=headers, max_attempts=2, backoff=0.01, timeout=5))
    texts: list[str] = [repr(options)]

    entries = refscan.scan(presigned(base, "d/ok.bin"), options=options)
    manifest = Manifest(entries)
    texts += [manifest.to_json(), repr(entries)]
    assert entries[0].ref is not None
    assert "X-Amz-Signature=REDACTED" in entries[0].ref
    assert "keep=1" in entries[0].ref

    unchecked = refscan.scan(presigned(base, "d/ok.bin"), checksum=False)
    texts.append(Manifest(unchecked).to_json())

    errors: dict[str, type[RefscanError]] = {
        "d/missing.bin": NotFound,
        "d/denied.bin": AccessDenied,
        "d/flaky.bin": BackendError,
    }
    for path, kind in errors.items():
        with pytest.raises(kind) as info:
            refscan.scan(presigned(base, path), options=options)
        texts += error_texts(info.value)
    with pytest.raises(BackendError, match="cannot connect") as refused:
        refscan.scan(presigned(f"http://127.0.0.1:{free_port()}", "x.bin"), options=options)
    texts += error_texts(refused.value)
    with pytest.raises(InvalidURI) as bad:
        refscan.scan(f"http://alice:{PASSWORD}@127.0.0.1:99999/x.bin", options=options)
    texts += error_texts(bad.value)

    report = refscan.verify(manifest, deep=True, options=options)
    texts.append(json.dumps(report.to_dict()))
    with pytest.raises(refscan.DownloadError) as failed:  # the ref holds REDACTED signatures: a new URL
        refscan.download([ManifestEntry("x.bin", "abc123", ref=presigned(base, "d/missing.bin"))], tmp_path)
    texts += error_texts(failed.value)

    texts += [repr(e) for e in debug_logs] + [r.getMessage() for r in caplog.records]
    assert leaks(*texts) == []
    # the secrets were really in play: sent to the server, and logging was on
    sent_auth = {h.get("Authorization") for h in seen}
    if auth_header:
        assert BEARER in sent_auth
    else:
        assert f"Basic {base64.b64encode(f'alice:{PASSWORD}'.encode()).decode()}" in sent_auth
    assert any(e["event"] == "http.request" for e in debug_logs)
    assert any(e["event"] == "http.retry" for e in debug_logs)


@pytest.mark.parametrize("source", ["options", "environment"])
def test_aws_keys_and_session_tokens_never_reach_logs_errors_or_manifests(
    source: str,
    serve_app: Callable[[web.Application], str],
    debug_logs: list[dict[str, Any]],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[dict[str, str]] = []
    endpoint = serve_app(s3_app(seen))
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    common: dict[str, Any] = {"region": "us-east-1", "addressing_style": "path", "retry_mode": "standard"}
    if source == "options":
        keys = {
            "aws_access_key_id": AWS_KEY_ID,
            "aws_secret_access_key": AWS_SECRET_KEY,
            "aws_session_token": AWS_TOKEN,
        }
        s3 = S3Options(endpoint_url=endpoint, max_attempts=2, **keys, **common)
    else:
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", AWS_KEY_ID)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS_SECRET_KEY)
        monkeypatch.setenv("AWS_SESSION_TOKEN", AWS_TOKEN)
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", endpoint)
        s3 = S3Options(max_attempts=2, **common)
    options = Options(s3=s3)
    texts: list[str] = [repr(options)]

    entries = refscan.scan("s3://bk/ok.txt", options=options) + refscan.scan("s3://bk/data", options=options)
    texts.append(Manifest(entries).to_json())
    assert [e.path for e in entries] == ["ok.txt", "a.txt"]
    for uri, kind in (
        ("s3://bk/gone.txt", NotFound),
        ("s3://bk/flaky.txt", BackendError),
        ("s3://bk/x/", AccessDenied),
    ):
        with pytest.raises(kind) as info:
            refscan.scan(uri, options=options)
        texts += error_texts(info.value)
    texts.append(json.dumps(refscan.verify(entries, options=options).to_dict()))
    # an endpoint with user info in it (some S3-compatible setups): refused connection, error and log redacted
    unreachable = S3Options(endpoint_url=f"http://alice:{PASSWORD}@127.0.0.1:{free_port()}", max_attempts=1, **common)
    with pytest.raises(RefscanError) as info:
        refscan.scan("s3://bk/ok.txt", options=Options(s3=unreachable))
    texts += error_texts(info.value)

    texts += [repr(e) for e in debug_logs] + [r.getMessage() for r in caplog.records]
    assert leaks(*texts) == []
    assert any(AWS_KEY_ID in h.get("Authorization", "") for h in seen)  # the keys were really used
    assert any(h.get("X-Amz-Security-Token") == AWS_TOKEN for h in seen)
    assert any(e["event"] == "s3.open" for e in debug_logs)


def test_options_repr_hides_secrets() -> None:
    options = Options(
        s3=S3Options(aws_access_key_id=AWS_KEY_ID, aws_secret_access_key=AWS_SECRET_KEY, aws_session_token=AWS_TOKEN),
        gcs=refscan.GCSOptions(token=AWS_TOKEN),
        http=HTTPOptions(headers={"Authorization": BEARER}),
    )
    assert leaks(repr(options), str(options)) == []
    assert leaks(repr(refscan.RefURI.parse(presigned("http://h", "x")))) == []


# -- redaction: the CLI ------------------------------------------------------------------------------------------


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "refscan", "-v", "--log-format", "json", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=REPO,
    )


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    return isolated_env(tmp_path / "home") | {
        "AWS_ACCESS_KEY_ID": AWS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": AWS_SECRET_KEY,
        "AWS_SESSION_TOKEN": AWS_TOKEN,
        "AWS_REGION": "us-east-1",
        "AWS_MAX_ATTEMPTS": "2",
    }


@pytest.mark.integration
def test_cli_output_and_debug_logs_never_show_secrets(
    serve_app: Callable[[web.Application], str], cli_env: dict[str, str], tmp_path: Path
) -> None:
    seen: list[dict[str, str]] = []
    http_base = serve_app(http_app(seen))
    s3_endpoint = serve_app(s3_app(seen))
    env = cli_env | {"AWS_ENDPOINT_URL_S3": s3_endpoint}
    runs = {
        "scan ok": (["scan", presigned(http_base, "d/ok.bin")], 0),
        "scan table": (["scan", "--format", "table", presigned(http_base, "d/ok.bin")], 0),
        "scan jsonl -o": (
            ["scan", "--format", "jsonl", "-o", str(tmp_path / "out.jsonl"), presigned(http_base, "d/ok.bin")],
            0,
        ),
        "no checksum": (["scan", "--no-checksum", presigned(http_base, "d/ok.bin")], 0),
        "http 404": (["scan", presigned(http_base, "d/missing.bin")], 1),
        "http 503": (["scan", presigned(http_base, "d/flaky.bin")], 1),
        "s3 ok": (["scan", "s3://bk/ok.txt", "s3://bk/data"], 0),
        "s3 denied": (["scan", "s3://bk/x/"], 1),
        "s3 creds in uri": (["scan", f"s3://{AWS_KEY_ID}:{AWS_SECRET_KEY}@bk/k"], 2),
        "ftp creds": (["scan", f"ftp://alice:{PASSWORD}@host/x"], 2),
        "bad port": (["scan", f"http://alice:{PASSWORD}@127.0.0.1:99999/x"], 2),
    }
    for label, (args, code) in runs.items():
        result = run_cli(*args, env=env)
        assert result.returncode == code, f"{label}: {result.stderr}"
        assert leaks(result.stdout, result.stderr) == [], f"{label} leaked: {result.stdout}\n{result.stderr}"
        if code == 0 and label != "no checksum":
            assert '"level": "debug"' in result.stderr, f"{label}: no debug events on stderr"
    output = (tmp_path / "out.jsonl").read_text()
    assert "REDACTED" in output
    assert leaks(output) == []
    assert any(h.get("X-Amz-Security-Token") == AWS_TOKEN for h in seen)
    assert any(h.get("Authorization", "").startswith("Basic ") for h in seen)


# -- Azure: account keys and SAS signatures ----------------------------------------------------------------------


def test_azure_account_key_and_sas_never_reach_logs_errors_or_manifests(
    azurite: Any,
    azure_container: str,
    no_azure_env: pytest.MonkeyPatch,
    debug_logs: list[dict[str, Any]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    from datetime import datetime, timedelta, timezone

    from azure.storage.blob import ContainerSasPermissions, generate_container_sas

    from refscan import AzureOptions
    from refscan.demo.servers import AZURITE_ACCOUNT, AZURITE_KEY

    caplog.set_level(logging.DEBUG, logger="azure")  # the SDK's own request logging too
    azurite.upload(azure_container, "d/x.txt", b"x")
    sas = generate_container_sas(
        AZURITE_ACCOUNT,
        azure_container,
        account_key=AZURITE_KEY,
        permission=ContainerSasPermissions(read=True),  # no list: the folder scan fails
        expiry=datetime.now(timezone.utc) + timedelta(hours=1),
    )
    signature = dict(p.split("=", 1) for p in sas.split("&"))["sig"]
    texts: list[str] = []
    for options in (
        Options(azure=AzureOptions(connection_string=azurite.connection_string)),
        Options(azure=AzureOptions(endpoint_url=azurite.account_url, sas_token=sas)),
    ):
        texts.append(repr(options))
        entries = refscan.scan(f"az://{azure_container}/d/x.txt", options=options)
        texts.append(Manifest(entries).to_json())
        texts.append(json.dumps(refscan.verify(entries, deep=True, options=options).to_dict()))
        with pytest.raises(RefscanError) as info:
            refscan.scan(f"az://{azure_container}/missing-{len(texts)}/", options=options)
        texts.extend(error_texts(info.value))
    with pytest.raises(AccessDenied) as denied:
        refscan.scan(f"az://{azure_container}/d", options=options)
    texts.extend(error_texts(denied.value))
    texts.extend(json.dumps(e, default=str) for e in debug_logs)
    texts.append(caplog.text)
    assert any("azure" in r.name for r in caplog.records)  # the SDK's logging was on and captured
    secrets = (AZURITE_KEY, signature, sas)
    assert [s for s in secrets if any(s in t for t in texts)] == []
