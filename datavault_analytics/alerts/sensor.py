"""The alert sensor: one for the code location, reading the event log after its cursor and POSTing one alert per
cause and day. Delivery is at least once: a receiver that is down stops the tick where it is, and what was
not taken is sent on the next one (a plain sensor's cursor, unlike a run-status sensor's, moves only when
we move it)."""

import json
import time

import dagster as dg

from datavault_analytics.alerts.causes import alert_for, latest_storage_id, new_records
from datavault_analytics.alerts.webhook import AlertWebhook
from datavault_analytics.errors import AlertDeliveryError
from datavault_analytics.names import ALERT_SENSOR_NAME

REMEMBERED_SECONDS = 24 * 3600  # an alert's key is not sent again within a day


def build_alert_sensor(runs_by_default: bool) -> dg.SensorDefinition:
    @dg.sensor(
        name=ALERT_SENSOR_NAME,
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING if runs_by_default else dg.DefaultSensorStatus.STOPPED,
        description="Sends an alert to DATAVAULT_ALERT_WEBHOOK_URL for a run that failed after its retries, a "
        "failed check (a drift day given up on included), a schema change applied, a freshness deadline "
        "missed: once per cause and day.",
    )
    def datavault_alerts(context: dg.SensorEvaluationContext, alert_webhook: AlertWebhook):
        state = json.loads(context.cursor) if context.cursor else {}
        after, sent = int(state.get("after", -1)), dict(state.get("sent", {}))
        now = time.time()
        sent = {k: t for k, t in sent.items() if now - t < REMEMBERED_SECONDS}
        if after < 0:  # a new sensor starts from now, not from the instance's whole history
            after = latest_storage_id(context.instance)
            context.update_cursor(json.dumps({"after": after, "sent": sent}))
            return dg.SkipReason(f"Alerts start after event {after}.")
        if not alert_webhook.configured:
            return dg.SkipReason("DATAVAULT_ALERT_WEBHOOK_URL is not set: no alerts are sent.")
        delivered = skipped = 0
        for record in new_records(context.instance, after):
            alert = alert_for(context.instance, record)
            if alert is not None and alert.key not in sent:
                try:
                    alert_webhook.send(alert)
                except AlertDeliveryError as error:
                    context.update_cursor(json.dumps({"after": after, "sent": sent}))
                    return dg.SkipReason(f"{error}; {delivered} sent, the rest waits for the next tick.")
                sent[alert.key] = now
                delivered += 1
                context.log.info(f"Alert sent: {alert.cause}, {alert.table} {alert.day}.")
            elif alert is not None:
                skipped += 1
            after = record.storage_id
        context.update_cursor(json.dumps({"after": after, "sent": sent}))
        return dg.SkipReason(f"{delivered} alert(s) sent, {skipped} already sent today.")

    return datavault_alerts
