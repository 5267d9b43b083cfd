"""Local fakes of the services tests cannot run: PagerDuty Events API v2 and Slack.

They validate request payloads field by field against the published schemas
(a wrong or missing field is answered with 400 / ``ok: false`` and recorded in
``rejected``) and can be scripted to fail, time out or rate-limit.
"""

from tests.fakes._server import Scripted
from tests.fakes.pagerduty import FakePagerDuty
from tests.fakes.slack import FakeSlack

__all__ = ["FakePagerDuty", "FakeSlack", "Scripted"]
