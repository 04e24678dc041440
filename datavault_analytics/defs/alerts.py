"""The alert sensor every table shares (alerts/): built when the definitions are, from the environment."""

import dagster as dg

from datavault_analytics.alerts.sensor import build_alert_sensor
from datavault_analytics.settings import Settings


@dg.definitions
def alerts() -> dg.Definitions:
    return dg.Definitions(sensors=[build_alert_sensor(Settings.from_environment().automation_on)])
