"""Alert dispatch: routes, groups, inhibits and silences alerts from kubepulse.alerts.v1 and notifies receivers.

PagerDuty, Slack, email, webhook (Alertmanager's JSON), console and Kafka
receivers, configured with Alertmanager's vocabulary (see :mod:`.config`);
delivery guarantees are explained in :mod:`.dispatcher`.
"""

from streams.alerting.config import AlertingConfig, config_from_dict, default_config, load_config
from streams.alerting._metrics import DispatcherHealth
from streams.alerting.dispatcher import Dispatcher, MemorySink, Sink
from streams.alerting.errors import AlertingConfigError, AlertingError, MatcherError, NotifyError, SilenceError
from streams.alerting.router import Inhibitor, RouteMatch, Router
from streams.alerting.service import register_dispatcher, run_dispatcher
from streams.alerting.silences import SilenceStore, add_silence, expire_silence, list_silences, new_silence

__all__ = [
    "AlertingConfig",
    "AlertingConfigError",
    "AlertingError",
    "Dispatcher",
    "DispatcherHealth",
    "Inhibitor",
    "MatcherError",
    "MemorySink",
    "NotifyError",
    "RouteMatch",
    "Router",
    "SilenceError",
    "SilenceStore",
    "Sink",
    "add_silence",
    "config_from_dict",
    "default_config",
    "expire_silence",
    "list_silences",
    "load_config",
    "new_silence",
    "register_dispatcher",
    "run_dispatcher",
]
