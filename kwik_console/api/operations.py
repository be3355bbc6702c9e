"""Operating deliveries over /api/v1: pause and resume, resend, recoveries, the operational webhook.

The services (kwik_console.operations) check the rules and record the audit entries,
as the calling token (or the local admin) that the guard names.
"""

from __future__ import annotations

import datetime as dt

from fastapi import APIRouter, Response
from fastapi.concurrency import run_in_threadpool

from kwik_console.api import auth
from kwik_console.api.auth import CallerDep
from kwik_console.api.problems import ApiProblem
from kwik_console.api.schemas import (
    OperationalWebhookOut,
    OperationalWebhookSaved,
    OperationalWebhookSet,
    RecoveryList,
    RecoveryOut,
    RecoveryStart,
    ResendOutcome,
    WebhookOut,
    webhook_out,
)
from kwik_console.core.errors import InvalidInput, NotFound
from kwik_console.delivery import resend
from kwik_console.delivery.scheduler import deliver_now
from kwik_console.events import catalog
from kwik_console.operations import health, notices, recovery
from kwik_console.store.db import session_scope
from kwik_console.store.tables import DeliveryStatus
from kwik_console.team import access
from kwik_console.webhooks import service as webhooks

router = APIRouter(prefix=access.API_PREFIX)


def _conflict(exc: InvalidInput, field: str, code: str, title: str) -> Exception:
    """The services say "already running" as a field error; here that is a 409, not bad input."""
    if field in exc.errors:
        return ApiProblem(409, code, title, exc.message, errors=exc.errors)
    return exc


# ---------------------------------------------------------------- pause and resume


@router.post(
    "/webhooks/{webhook_id}/pause",
    response_model=WebhookOut,
    tags=["webhooks"],
    summary="Pause: events are still recorded and deliveries wait until it is resumed",
)
def pause_webhook(caller: CallerDep, webhook_id: int) -> WebhookOut:
    with session_scope() as session:
        webhook = health.pause_webhook(session=session, webhook_id=webhook_id, actor=caller.actor)
        return webhook_out(session, webhook, sees_secrets=auth.sees_secrets(caller))


@router.post(
    "/webhooks/{webhook_id}/resume",
    response_model=WebhookOut,
    tags=["webhooks"],
    summary="Live again, from Paused or Disabled: what waited goes out now, oldest first",
)
def resume_webhook(caller: CallerDep, webhook_id: int) -> WebhookOut:
    with session_scope() as session:
        webhook = health.resume_webhook(session=session, webhook_id=webhook_id, actor=caller.actor)
        return webhook_out(session, webhook, sees_secrets=auth.sees_secrets(caller))


# ---------------------------------------------------------------- resend


@router.post(
    "/deliveries/{delivery_id}/resend",
    response_model=ResendOutcome,
    tags=["deliveries"],
    summary="Send a delivery again now (same event, same webhook-id); answers with the attempt's outcome",
)
async def resend_delivery(caller: CallerDep, delivery_id: int) -> ResendOutcome:

    # resend.resend(), with its database step off the event loop, as the test route does.
    def prepare() -> None:
        with session_scope() as session:
            resend.prepare_resend(session=session, delivery_id=delivery_id, actor=caller.actor)

    await run_in_threadpool(prepare)
    outcomes = await deliver_now([delivery_id])
    if not outcomes:  # a dispatcher took it first and its attempt did not come back in time
        return ResendOutcome(
            delivery_id=delivery_id,
            attempt=None,
            status=DeliveryStatus.PENDING.value,
            http_code=None,
            duration_ms=None,
            response_body="",
            error=None,
            retry_at=None,
        )
    o = outcomes[0]
    return ResendOutcome(
        delivery_id=o.delivery_id,
        attempt=o.attempt_number,
        status=o.status,
        http_code=o.http_code,
        duration_ms=o.duration_ms,
        response_body=o.response_body[:2000],
        error=o.error,
        retry_at=o.next_attempt_at,
    )


# ---------------------------------------------------------------- recover failed since


@router.post(
    "/webhooks/{webhook_id}/recoveries",
    response_model=RecoveryOut,
    status_code=202,
    tags=["recoveries"],
    summary="Recover failed deliveries since a date: a job that queues them again, in batches",
)
def start_recovery(caller: CallerDep, webhook_id: int, body: RecoveryStart) -> RecoveryOut:
    # Without an offset: UTC. With one: in UTC, as every later read gives it back.
    since = body.since.astimezone(dt.UTC) if body.since.tzinfo else body.since.replace(tzinfo=dt.UTC)
    with session_scope() as session:
        try:
            progress = recovery.start_recovery(
                session=session,
                webhook_id=webhook_id,
                since=since,
                event_types=body.event_types,
                statuses=body.statuses,
                actor=caller.actor,
            )
        except recovery.AlreadyRunning as exc:
            raise _conflict(exc, "webhook", "recovery_running", "A recovery is already running") from None
        except recovery.WebhookDisabled as exc:
            raise _conflict(exc, "webhook", "webhook_disabled", "The webhook is Disabled") from None
    return RecoveryOut.of(progress)


@router.get(
    "/webhooks/{webhook_id}/recoveries",
    response_model=RecoveryList,
    tags=["recoveries"],
    summary="A webhook's recoveries, newest first",
)
def list_recoveries(caller: CallerDep, webhook_id: int) -> RecoveryList:
    with session_scope() as session:
        webhooks.get_webhook(session=session, webhook_id=webhook_id)
        return RecoveryList(
            items=[RecoveryOut.of(p) for p in recovery.list_recoveries(session=session, webhook_id=webhook_id)]
        )


@router.get(
    "/recoveries/{recovery_id}", response_model=RecoveryOut, tags=["recoveries"], summary="A recovery's progress"
)
def get_recovery(caller: CallerDep, recovery_id: int) -> RecoveryOut:
    with session_scope() as session:
        return RecoveryOut.of(recovery.get_recovery(session=session, recovery_id=recovery_id))


@router.post(
    "/recoveries/{recovery_id}/cancel",
    response_model=RecoveryOut,
    tags=["recoveries"],
    summary="Cancel a running recovery: deliveries it queued and has not sent go back",
)
def cancel_recovery(caller: CallerDep, recovery_id: int) -> RecoveryOut:
    with session_scope() as session:
        try:
            progress = recovery.cancel_recovery(session=session, recovery_id=recovery_id, actor=caller.actor)
        except InvalidInput as exc:
            raise _conflict(exc, "recovery", "recovery_not_running", "The recovery is not running") from None
    return RecoveryOut.of(progress)


# ---------------------------------------------------------------- the operational webhook (admins)


def _no_operational() -> NotFound:
    return NotFound("No operational webhook is set: PUT /api/v1/operational-webhook with its url.")


@router.get(
    "/operational-webhook",
    response_model=OperationalWebhookOut,
    tags=["operational webhook"],
    summary="Where the console sends its notices about webhooks (never with its signing secret)",
)
def get_operational_webhook(caller: CallerDep) -> OperationalWebhookOut:
    with session_scope() as session:
        webhook = notices.operational_webhook(session=session)
        if webhook is None:
            raise _no_operational()
        return OperationalWebhookOut.of(webhook, catalog.operational_type_names())


@router.put(
    "/operational-webhook",
    response_model=OperationalWebhookSaved,
    tags=["operational webhook"],
    summary="Set the operational webhook, or change its URL; answers with its signing secret",
)
def set_operational_webhook(caller: CallerDep, body: OperationalWebhookSet) -> OperationalWebhookSaved:
    with session_scope() as session:
        webhook = notices.set_operational_webhook(session=session, url=body.url, actor=caller.actor)
        out = OperationalWebhookOut.of(webhook, catalog.operational_type_names())
        return OperationalWebhookSaved(**out.model_dump(), secret=webhook.secret)


@router.delete(
    "/operational-webhook",
    status_code=204,
    response_class=Response,
    tags=["operational webhook"],
    summary="Remove the operational webhook: no more notices are sent",
)
def remove_operational_webhook(caller: CallerDep) -> Response:
    with session_scope() as session:
        if not notices.remove_operational_webhook(session=session, actor=caller.actor):
            raise _no_operational()
    return Response(status_code=204)
