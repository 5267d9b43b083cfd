"""Test doubles for the collectors: a Kubernetes API server over HTTP and real-shaped payloads."""

from collectors.testing.fake_apiserver import Access, FakeApiServer, Fault

__all__ = ["FakeApiServer", "Access", "Fault"]
