"""`s3://` references: S3 and S3-compatible stores (MinIO, R2, Ceph, moto).

`backend.py` holds `S3Backend` (URIs, codec, fingerprints, objects and folders), `client.py` the client and
its one request path and error table, `listing.py` the folder walk.
"""

from .backend import S3Backend

__all__ = ["S3Backend"]
