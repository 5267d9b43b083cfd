"""Kibana saved objects (data views, dashboards, searches) and their provisioner."""

from kibana.errors import (
    KibanaAuthError,
    KibanaError,
    KibanaImportError,
    KibanaRequestError,
    KibanaUnavailable,
    ObjectError,
    SavedObjectsError,
)
from kibana.saved_objects import DEFAULT_PREFIX, build, check, objects_for, packaged, parse_ndjson, to_ndjson

__all__ = [
    "DEFAULT_PREFIX",
    "KibanaAuthError",
    "KibanaError",
    "KibanaImportError",
    "KibanaRequestError",
    "KibanaUnavailable",
    "ObjectError",
    "SavedObjectsError",
    "build",
    "check",
    "objects_for",
    "packaged",
    "parse_ndjson",
    "to_ndjson",
]
