"""Fault injection for tests: a reverse proxy in front of the real S3, GCS and HTTP test servers."""

from __future__ import annotations

from .proxy import FAULT_KINDS, FaultPlan, FaultProxy, ProxyRequest, ProxyStats, is_listing

__all__ = ["FAULT_KINDS", "FaultPlan", "FaultProxy", "ProxyRequest", "ProxyStats", "is_listing"]
