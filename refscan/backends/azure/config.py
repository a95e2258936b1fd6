"""Azure settings and URL rules, without the SDK: connection strings, the configured account and its secrets,
which http(s) URLs are Azure blobs (`claims`), and how a reference splits into account, container, blob and
version (`split`). The URI router imports this module before any backend is loaded, so nothing here imports
azure.

A parsed Azure reference is `RefURI("az", bucket="<account URL>/<container>", key="<blob>", version)`: the
account URL is part of the bucket, so every ref and message names the account (`https://acct.blob.core.
windows.net/container/blob`, W&B's form).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import unquote, urlsplit

from ...errors import InvalidURI
from ...options import AzureOptions
from ...uri import RefURI, shown

SCHEME = "az"
BLOB_HOST_SUFFIX = ".blob.core.windows.net"
#: the published Azurite / storage-emulator account (`UseDevelopmentStorage=true`); not a secret
DEV_ACCOUNT = "devstoreaccount1"
DEV_ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
DEV_BLOB_ENDPOINT = f"http://127.0.0.1:10000/{DEV_ACCOUNT}"
#: a trailing `?versionId=V` pins a version (the query W&B writes); nothing else in a reference is a query
VERSION_RE = re.compile(r"\?versionId=([^/?&#=]+)$")
_SAS_RE = re.compile(r"[?&](?:sig|sv|se|sp)=", re.IGNORECASE)
_CONTAINER_RE = re.compile(r"^(?:\$root|\$web|\$logs|[a-z0-9][a-z0-9-]{1,62})$")


def connection_settings(text: str) -> dict[str, str]:
    """`Key=Value;...` of a connection string, keys lower-cased (values keep their `=` padding)."""
    pairs = (part.partition("=") for part in text.split(";") if part.strip())
    settings = {key.strip().lower(): value.strip() for key, _, value in pairs}
    if settings.get("usedevelopmentstorage", "").lower() == "true":
        settings = {
            "accountname": DEV_ACCOUNT,
            "accountkey": DEV_ACCOUNT_KEY,
            "blobendpoint": DEV_BLOB_ENDPOINT,
            **{k: v for k, v in settings.items() if k != "usedevelopmentstorage"},
        }
    return settings


def normalise(url: str) -> str:
    """An account or endpoint URL compared and written as: lower-case scheme and host, no trailing `/`."""
    parts = urlsplit(url.strip())
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}{parts.path.rstrip('/')}"


def _account_url_of(settings: dict[str, str]) -> str | None:
    if settings.get("blobendpoint"):
        return normalise(settings["blobendpoint"])
    name = settings.get("accountname")
    if not name:
        return None
    protocol = settings.get("defaultendpointsprotocol") or "https"
    suffix = settings.get("endpointsuffix") or "core.windows.net"
    return f"{protocol}://{name}.blob.{suffix}".lower()


def _name_in(url: str | None) -> str | None:
    """The account name an account URL shows: the host's first label, or the path of an endpoint URL."""
    if not url:
        return None
    parts = urlsplit(url)
    path = parts.path.strip("/")
    if path:
        return path.split("/", 1)[0]
    return (parts.hostname or "").split(".", 1)[0] or None


@dataclass(frozen=True)
class Configured:
    """What the options and environment say: the account `az://` names (`account_url`, may be None), the
    endpoints whose URLs are Azure blobs, and the credential for that account, as the first source that sets
    one gives it (`source` names it, for messages; secrets are never in a repr)."""

    account_url: str | None
    endpoints: tuple[str, ...]
    source: str
    account_name: str | None = None
    account_key: str | None = field(default=None, repr=False)
    sas_token: str | None = field(default=None, repr=False)
    credential: Any = field(default=None, repr=False)
    anonymous: bool = False


def configured(options: AzureOptions) -> Configured:
    """Resolve `options` and the environment (see `AzureOptions` for the order)."""
    env = os.environ
    option_settings = connection_settings(options.connection_string) if options.connection_string else {}
    env_settings = connection_settings(env.get("AZURE_STORAGE_CONNECTION_STRING", ""))
    env_name = env.get("AZURE_STORAGE_ACCOUNT_NAME") or None
    account_url = (
        (normalise(options.account_url) if options.account_url else None)
        or (normalise(options.endpoint_url) if options.endpoint_url else None)
        or _account_url_of(option_settings)
        or (f"https://{options.account_name}{BLOB_HOST_SUFFIX}".lower() if options.account_name else None)
        or _account_url_of(env_settings)
        or (f"https://{env_name}{BLOB_HOST_SUFFIX}".lower() if env_name else None)
    )
    endpoints = tuple(
        dict.fromkeys(
            normalise(url)
            for url in (account_url, options.endpoint_url, option_settings.get("blobendpoint"))
            if url and not (urlsplit(url).hostname or "").endswith(BLOB_HOST_SUFFIX)
        )
    )
    name = options.account_name or _name_in(account_url)
    secrets = replace(Configured(account_url, endpoints, "DefaultAzureCredential"), account_name=name)
    if option_settings:
        return _from_settings(secrets, "AzureOptions.connection_string", option_settings)
    if options.account_key:
        return replace(secrets, source="AzureOptions.account_key", account_key=options.account_key)
    if options.sas_token:
        return replace(secrets, source="AzureOptions.sas_token", sas_token=options.sas_token)
    if options.credential is not None:
        return replace(secrets, source="AzureOptions.credential", credential=options.credential)
    if options.anonymous:
        return replace(secrets, source="AzureOptions.anonymous", anonymous=True)
    if env_settings.get("accountkey") or env_settings.get("sharedaccesssignature"):
        return _from_settings(secrets, "AZURE_STORAGE_CONNECTION_STRING", env_settings)
    if env_name and env.get("AZURE_STORAGE_ACCOUNT_KEY"):
        return replace(
            secrets,
            source="AZURE_STORAGE_ACCOUNT_KEY",
            account_name=env_name,
            account_key=env["AZURE_STORAGE_ACCOUNT_KEY"],
        )
    if env.get("AZURE_STORAGE_SAS_TOKEN"):
        return replace(secrets, source="AZURE_STORAGE_SAS_TOKEN", sas_token=env["AZURE_STORAGE_SAS_TOKEN"])
    return secrets


def _from_settings(base: Configured, source: str, settings: dict[str, str]) -> Configured:
    """`base` with the account name, key and SAS of a connection string."""
    return replace(
        base,
        source=source,
        account_name=settings.get("accountname") or base.account_name,
        account_key=settings.get("accountkey"),
        sas_token=settings.get("sharedaccesssignature"),
    )


def _under(url: str, endpoint: str) -> bool:
    """True when `url` names something below `endpoint` (scheme and host compared without case)."""
    cut = endpoint.index("://") + 3
    head = endpoint.find("/", cut)
    host_end = len(endpoint) if head < 0 else head
    if url[:host_end].lower() != endpoint[:host_end]:
        return False
    return url[host_end:].startswith(endpoint[host_end:] + "/")


def _account_of(url: str, endpoints: tuple[str, ...]) -> str | None:
    """The account URL an http(s) URL is under: a configured endpoint (the longest), else
    `scheme://<account>.blob.core.windows.net`; None when the URL is not an Azure blob URL."""
    for endpoint in sorted(endpoints, key=len, reverse=True):
        if _under(url, endpoint):
            return endpoint
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
    except ValueError:
        return None
    if host.endswith(BLOB_HOST_SUFFIX) and "@" not in parts.netloc:
        return normalise(f"{parts.scheme}://{parts.netloc}")
    return None


def claims(text: str, options: AzureOptions) -> bool:
    """True for an http(s) URL of an Azure blob: any `<account>.blob.core.windows.net` host, or a URL under
    the configured account or endpoint."""
    if _account_of(text, ()) is not None:
        return True
    endpoints = configured(options).endpoints
    return bool(endpoints) and _account_of(text, endpoints) is not None


def split(text: str, options: AzureOptions) -> RefURI:
    """`az://container/blob` (in the configured account) or an Azure blob URL as a RefURI; `?versionId=V` at
    the end pins a version. Blob names are taken as written (no percent-decoding). Raises `InvalidURI`."""
    where = shown(text)
    settings = configured(options)
    if text[:5].lower() == f"{SCHEME}://":
        account = settings.account_url
        if account is None:
            raise InvalidURI(
                f"{where}: az:// names a container of the configured account, and none is configured: set "
                "AZURE_STORAGE_CONNECTION_STRING or AZURE_STORAGE_ACCOUNT_NAME, or AzureOptions(account_url=...)"
            )
        rest = text[5:]
    else:
        found = _account_of(text, settings.endpoints)
        if found is None:
            raise InvalidURI(f"{where} is not an Azure blob URL (<account>.blob.core.windows.net or the endpoint)")
        account, rest = found, text[len(found) + 1 :]
    container, _, key = rest.partition("/")
    version: str | None = None
    found_version = VERSION_RE.search(key)
    if found_version is not None:
        version = unquote(found_version.group(1))
        key = key[: found_version.start()]
    if _SAS_RE.search(rest):
        raise InvalidURI(
            f"{where}: a SAS token does not belong in the reference (it would be recorded); pass it as "
            "AzureOptions(sas_token=...) or AZURE_STORAGE_SAS_TOKEN"
        )
    if not _CONTAINER_RE.match(container):
        raise InvalidURI(f"malformed Azure reference {where}: {container!r} is not a valid container name")
    if version is not None and (not key or key.endswith("/")):
        raise InvalidURI(f"{where}: a version can only pin a blob, not a container or folder")
    return RefURI(SCHEME, f"{account}/{container}", key, version)


def parts(uri: RefURI) -> tuple[str, str]:
    """(account URL, container) of a parsed Azure reference."""
    account, _, container = uri.bucket.rpartition("/")
    return account, container
