"""Optional integrations with other tools. Each submodule imports its tool on import, never this package.

- `refscan.integrations.wandb`: fill a `wandb.Artifact` from refscan scans (`pip install 'refscan[wandb]'`).
"""
