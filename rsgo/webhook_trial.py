"""A test event for one webhook, sent now from the admin page's "Send test" (README "Webhooks").

It is signed and sent exactly like a real delivery (same headers, same signature, the same outbound
policy and timeout as ``rsgo.webhooks.WebhookDispatcher``), but once and while the admin waits: the
answer (a status code or an error) is what the page shows. It is logged in the delivery log like any
other delivery, under the event ``webhook.test`` so nobody mistakes it for a real one, and it is not
retried: a person who wants to try again clicks again.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass

import requests

from rsgo.db import timestamp, utcnow
from rsgo.http_errors import describe
from rsgo.models import Webhook, WebhookDelivery
from rsgo.outbound import OutboundDenied, guard
from rsgo.webhooks import USER_AGENT, WebhookDispatcher, sign

log = logging.getLogger(__name__)

TEST_EVENT = "webhook.test"


@dataclass(frozen=True)
class TrialResult:
    delivered: bool
    status_code: int | None
    error: str | None
    duration_ms: int
    delivery_id: str


def send_test(dispatcher: WebhookDispatcher, hook: Webhook, *, actor: str, environment: str) -> TrialResult:
    """Sign and POST a ``webhook.test`` event to ``hook`` once; the delivery log gets the row."""
    delivery_id = str(uuid.uuid4())
    at = utcnow()
    body = json.dumps({"event": TEST_EVENT, "deliveryId": delivery_id, "timestamp": timestamp(at), "test": True,
                       "environment": environment, "sentBy": actor,
                       "message": f"A test from rsgo's admin page, sent by {actor}; no stack changed."},
                      separators=(",", ":"))
    row = WebhookDelivery.create(webhook=hook, delivery_id=delivery_id, event=TEST_EVENT, body=body)
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, "X-RSGO-Event": TEST_EVENT,
               "X-RSGO-Delivery": delivery_id, "X-RSGO-Timestamp": timestamp(at)}
    if hook.secret:
        headers["X-RSGO-Signature"] = sign(hook.secret, body.encode("utf-8"))
    began = time.monotonic()
    code, error = None, None
    try:
        with guard(requests.Session(), dispatcher.outbound) as session:
            response = session.post(hook.url, data=body.encode("utf-8"), headers=headers,
                                    timeout=(dispatcher.timeout, dispatcher.timeout), allow_redirects=False)
        code = response.status_code
        response.close()
        if not 200 <= code < 300:
            error = f"HTTP {code}"
    except OutboundDenied as refusal:
        error = str(refusal)
    except requests.RequestException as failure:
        error = describe(failure, dispatcher.timeout)
    duration_ms = int((time.monotonic() - began) * 1000)
    delivered = error is None
    attempt = {"at": timestamp(utcnow()), "statusCode": code, "error": error, "durationMs": duration_ms}
    (WebhookDelivery.update(status="delivered" if delivered else "failed", attempts=1,
                            attempt_log=json.dumps([attempt]), last_status_code=code, last_error=error,
                            delivered_at=utcnow() if delivered else None)
     .where(WebhookDelivery.id == row.id).execute())
    if delivered:
        log.info("webhook %s: test delivery %s delivered (HTTP %s), sent by %s", hook.name, delivery_id, code, actor)
    else:
        log.warning("webhook %s: test delivery %s failed: %s (sent by %s)", hook.name, delivery_id, error, actor)
    return TrialResult(delivered, code, error, duration_ms, delivery_id)
