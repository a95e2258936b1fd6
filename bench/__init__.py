"""Reproducible benchmarks of refscan against W&B add_reference and rclone lsjson (see bench/README.md).

Run with `python -m bench`."""
