"""What kubepulse's data is and how it is judged: topic records and anomaly detectors.

models/ is the bottom layer: it imports nothing else of kubepulse's.
"""

from models._fingerprint import fingerprint
from models.codec import decode, encode
from models.errors import ConfigError, KubepulseModelError, RecordError
from models.records import (
    RECORD_TYPES,
    SCHEMA_VERSION,
    AlertTransition,
    Anomaly,
    DeadLetter,
    Incident,
    KubeEvent,
    NodeScrape,
    Notification,
    Record,
    EntityRollup,
    MetricStats,
)

__all__ = [
    "RECORD_TYPES",
    "SCHEMA_VERSION",
    "AlertTransition",
    "Anomaly",
    "ConfigError",
    "DeadLetter",
    "Incident",
    "KubeEvent",
    "KubepulseModelError",
    "NodeScrape",
    "Notification",
    "Record",
    "RecordError",
    "EntityRollup",
    "MetricStats",
    "decode",
    "encode",
    "fingerprint",
]
