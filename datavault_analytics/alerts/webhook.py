"""Where alerts go: a webhook that takes Slack's incoming-webhook JSON (`text`), with the alert's fields beside it
for other receivers. Its URL is a secret (DATAVAULT_ALERT_WEBHOOK_URL): never logged, only its host."""

import json
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from urllib.parse import urlsplit

import dagster as dg
from pydantic import Field

from datavault_analytics.errors import AlertDeliveryError


@dataclass(frozen=True)
class Alert:
    cause: str  # "run failed", "check failed", "schema changed", "freshness missed"
    table: str
    day: str  # a partition key, or a range "first..last"
    summary: str
    key: str  # one alert per key: cause, table, day (and check)
    details: dict = field(default_factory=dict)

    def payload(self) -> dict:
        return {"text": f"DataVault {self.cause}: {self.summary}", "datavault": asdict(self)}


class AlertWebhook(dg.ConfigurableResource):
    """An HTTP endpoint that receives each alert as one JSON POST."""

    url: str | None = Field(default=None, description="The webhook's URL; unset: alerts are not sent.")
    timeout_seconds: float = Field(default=10, gt=0, description="How long one POST may take.")

    @property
    def configured(self) -> bool:
        return bool(self.url)

    @property
    def where(self) -> str:
        """The receiver's host, for messages: the URL's path is often the secret (Slack's is)."""
        return urlsplit(self.url or "").netloc or "?"

    def send(self, alert: Alert) -> None:
        request = urllib.request.Request(  # noqa: S310 - an https/http URL from the deployment's settings
            self.url,
            data=json.dumps(alert.payload()).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_seconds) as response:  # noqa: S310
                response.read()
        except urllib.error.HTTPError as error:
            raise AlertDeliveryError(
                f"the alert webhook at {self.where} answered HTTP {error.code}"
            ) from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise AlertDeliveryError(f"the alert webhook at {self.where} is unreachable ({reason})") from None
