"""Reading clusters (kubelet Summary API, pod specs, Events) and a simulated fleet; they only publish records."""

from collectors.collector import Collector, PassReport
from collectors.errors import AccessDenied, ClusterUnavailable, CollectorError, MalformedPayload
from collectors.rbac import REQUIRED_RULES

__all__ = ["Collector", "PassReport", "REQUIRED_RULES", "CollectorError", "AccessDenied", "ClusterUnavailable", "MalformedPayload"]
