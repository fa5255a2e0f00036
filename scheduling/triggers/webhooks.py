"""``POST /hooks/<flow>/<name>``: start a run of a flow from a webhook call.

In order: the trigger is found (an unknown or disabled one answers as a wrong secret does),
the call is counted against the trigger's rate limit, the body is read up to the size limit,
the secret is checked (``Authorization: Bearer <secret>``, or ``X-Flowplatform-Timestamp`` and
``X-Flowplatform-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`` within
``TOLERANCE_S`` of now; compared in constant time), the JSON body is parsed, and the run is
started once per event (``firing.fire``): the event is the ``Idempotency-Key`` when given,
else the signature (a replayed signature is refused), else the call itself.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
import uuid
from typing import Any

import redis
from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from flowplatform.jsondoc import JSONDocumentError, load_json_document, read_document
from flows.access import AccessDenied
from flows.models import Trigger
from flows.services import DispatchError, run_result, wait_for_run
from flows.validation import FlowValidationError
from scheduling.triggers.firing import fire
from scheduling.triggers.models import FlowTrigger, TriggerEvent, TriggerKind

logger = logging.getLogger("flowplatform.triggers")

#: Largest difference between a signature's timestamp and the server's clock.
TOLERANCE_S = 300
MAX_IDEMPOTENCY_KEY = 200
#: Records of the last node a ``"response": "wait"`` answer carries.
RESULT_RECORDS = 100


class Refused(Exception):
    def __init__(self, status: int, message: str, **headers: str) -> None:
        super().__init__(message)
        self.status, self.headers = status, headers


@csrf_exempt
@require_POST
def webhook(request: HttpRequest, flow: str, name: str) -> JsonResponse:
    try:
        return _handle(request, flow, name)
    except Refused as exc:
        response = JsonResponse({"detail": str(exc)}, status=exc.status)
        for header, value in exc.headers.items():
            response[header.replace("_", "-")] = value
        return response


def _handle(request: HttpRequest, flow: str, name: str) -> JsonResponse:
    trigger = (
        FlowTrigger.objects.select_related("flow", "owner")
        .filter(flow__slug=flow, kind=TriggerKind.WEBHOOK, name=name, enabled=True)
        .first()
    )
    if trigger is None or not trigger.encrypted_secret:
        raise Refused(401, "unknown webhook, or a missing or wrong secret")
    _rate_limit(trigger)
    body = _read_body(request)
    signature = authenticate(trigger.secret(), request.headers, body)
    payload = _parse(body)
    key = _event_key(request, signature)
    if key.startswith("sig:") and TriggerEvent.objects.filter(trigger=trigger, key=key).exists():
        raise Refused(401, "this signature was used already (a replay): sign each call anew")
    try:
        fired = fire(trigger, key, trigger_type=Trigger.WEBHOOK, payload=payload)
    except AccessDenied as exc:
        raise Refused(403, f"the trigger's owner may not run this flow: {exc}") from None
    except FlowValidationError as exc:
        raise Refused(409, f"the flow is invalid: {exc}") from None
    except DispatchError:
        raise Refused(503, "the run could not be queued: the broker is unavailable") from None
    run = fired.run
    if run is None:  # the run of an earlier call was deleted since
        raise Refused(410, "the run started for this Idempotency-Key no longer exists")
    if not fired.started and key.startswith("sig:"):
        raise Refused(401, "this signature was used already (a replay): sign each call anew")
    if trigger.option("response") == "wait":
        run = wait_for_run(run, timeout=float(trigger.option("timeout_s", 30)))
        if run.is_finished:
            return JsonResponse(run_result(run, RESULT_RECORDS), status=200)
        return JsonResponse({"run": str(run.id), "status": run.status}, status=202)
    return JsonResponse({"run": str(run.id)}, status=202 if fired.started else 200)


def authenticate(secret: str, headers: Any, body: bytes, now: float | None = None) -> str:
    """Check the call's secret; returns the signature's hex ('' for a bearer secret).
    Raises Refused(401) when it is missing, wrong or too old."""
    authorization = headers.get("Authorization", "")
    if authorization:
        scheme, _, given = authorization.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), secret.encode()
        ):
            raise Refused(401, "unknown webhook, or a missing or wrong secret")
        return ""
    stamp = headers.get("X-Flowplatform-Timestamp", "")
    signed = headers.get("X-Flowplatform-Signature", "")
    if not stamp or not signed:
        raise Refused(401, "unknown webhook, or a missing or wrong secret")
    if not stamp.isdigit():
        raise Refused(401, "X-Flowplatform-Timestamp must be unix seconds")
    now = time.time() if now is None else now
    if abs(now - int(stamp)) > TOLERANCE_S:
        raise Refused(401, f"X-Flowplatform-Timestamp is more than {TOLERANCE_S}s off")
    expected = sign(secret, stamp, body)
    if not hmac.compare_digest(signed.strip().encode(), f"sha256={expected}".encode()):
        raise Refused(401, "unknown webhook, or a missing or wrong secret")
    return expected


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``"<timestamp>.<body>"`` with ``secret``."""
    message = timestamp.encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def _read_body(request: HttpRequest) -> bytes:
    limit = settings.FLOWPLATFORM_WEBHOOK_MAX_BYTES
    try:
        declared = int(request.headers.get("Content-Length") or 0)
    except ValueError:
        raise Refused(400, "Content-Length must be a number") from None
    if declared > limit:
        raise Refused(413, f"the body is larger than the limit of {limit} bytes")
    try:
        return read_document(request, limit)
    except JSONDocumentError as exc:
        raise Refused(413, str(exc)) from None


def _parse(body: bytes) -> Any:
    if not body.strip():
        return None
    try:
        return load_json_document(body)
    except JSONDocumentError as exc:
        raise Refused(400, f"the body is not a JSON document the platform accepts: {exc}") from None


def _event_key(request: HttpRequest, signature: str) -> str:
    given = request.headers.get("Idempotency-Key", "")
    if given:
        if len(given) > MAX_IDEMPOTENCY_KEY or not given.isprintable():
            raise Refused(400, f"Idempotency-Key must be printable, at most {MAX_IDEMPOTENCY_KEY}")
        return f"key:{given}"
    if signature:
        return f"sig:{signature}"
    return f"call:{uuid.uuid4()}"


def _rate_limit(trigger: FlowTrigger) -> None:
    """At most ``rate_per_minute`` calls a minute (``FLOWPLATFORM_WEBHOOK_RATE_PER_MINUTE``
    by default) per trigger, counted in Redis; without a Redis broker (embedded mode) no limit."""
    client = _redis()
    if client is None:
        return
    limit = trigger.option("rate_per_minute") or settings.FLOWPLATFORM_WEBHOOK_RATE_PER_MINUTE
    window = int(time.time() // 60)
    key = f"flowplatform:webhook-rate:{trigger.pk}:{trigger.created_at.timestamp()}:{window}"
    try:
        with client.pipeline() as pipe:
            count, _ = pipe.incr(key).expire(key, 120).execute()
    except redis.RedisError as exc:
        logger.warning("webhook rate limit not checked (Redis: %s)", exc)
        return
    if count > limit:
        retry = 60 - int(time.time()) % 60
        raise Refused(429, f"more than {limit} calls a minute", Retry_After=str(retry))


_client: redis.Redis | None = None


def _redis() -> redis.Redis | None:
    global _client
    url = settings.CELERY_BROKER_URL
    if not url.startswith(("redis://", "rediss://")):
        return None
    if _client is None:
        _client = redis.Redis.from_url(url, socket_timeout=2)
    return _client
