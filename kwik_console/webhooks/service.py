"""The webhook service: validate, create, get, update, delete, list and search, reveal and rotate the secret.

Every face (console, CLI, API) calls these; a webhook's rules live here only, and each change writes its
audit entry here, in the change's own transaction, whichever face asked for it.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import secrets

from sqlmodel import Session, and_, col, delete, func, or_, select, update

from kwik_console.core import doorbell
from kwik_console.core.clock import iso, utcnow
from kwik_console.core.errors import ID_MAX, InvalidInput, NotFound, check_id
from kwik_console.core.text import LONE_SURROGATE
from kwik_console.events import catalog
from kwik_console.store.tables import (
    Attempt,
    Delivery,
    DeliveryStatus,
    PreviousSecret,
    Recovery,
    Subscription,
    Webhook,
    WebhookStatus,
)
from kwik_console.team import audit
from kwik_console.webhooks.rules import ALL_EVENTS, WebhookInput, validate
from kwik_console.webhooks.signing import SECRET_PREFIX

PAGE_SIZE = 25
# How long the old secret still signs after a rotation, so receivers can switch keys.
ROTATION_OVERLAP = dt.timedelta(hours=24)


@dataclasses.dataclass(frozen=True)
class WebhookPage:
    items: list[Webhook]
    total: int
    page: int
    per_page: int
    # The keyset of the next page (`after`), or None on the last page.
    next_after: tuple[dt.datetime, int] | None = None

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def _search_text(name: str, url: str) -> str:
    return f"{name} {url}".lower()


def audit_target(webhook: Webhook) -> str:
    return f"webhook {webhook.id} ({webhook.name})"


def _audited(session: Session, webhook: Webhook) -> dict:
    """What the audit trail keeps of a webhook: everything a merchant can edit, never its secret.

    Of custom headers, only their names: a value is often a credential for the endpoint.
    """
    return {
        "name": webhook.name,
        "url": webhook.url,
        "status": webhook.status,
        "events": webhook_events(session=session, webhook_id=webhook.id),
        "max_per_second": webhook.max_per_second,
        "headers": sorted(webhook.headers or {}),
    }


def _subscribe(session: Session, webhook: Webhook, events: list[str]) -> None:
    """The Events field: the all-events flag with no rows, or one row per chosen type."""
    webhook.all_events = events == [ALL_EVENTS]
    session.add(webhook)
    if not webhook.all_events:
        session.add_all(Subscription(webhook_id=webhook.id, event_type=e) for e in events)


# ---------------------------------------------------------------- service functions


def create_webhook(*, session: Session, data: WebhookInput, actor: audit.Actor, client_address: str = "") -> Webhook:
    clean = validate(data)
    now = utcnow()
    webhook = Webhook(
        name=clean.name,
        url=clean.url,
        status=clean.status,
        max_per_second=clean.max_per_second,
        headers=clean.headers,
        secret=new_secret(),
        search_text=_search_text(clean.name, clean.url),
        created_at=now,
        updated_at=now,
    )
    session.add(webhook)
    session.flush()
    _subscribe(session, webhook, clean.events)
    session.flush()
    audit.record(
        session=session,
        actor=actor,
        action="webhook.created",
        target=audit_target(webhook),
        detail={"after": _audited(session, webhook)},
        client_address=client_address,
    )
    return webhook


def get_webhook(*, session: Session, webhook_id: int) -> Webhook:
    webhook = session.get(Webhook, check_id("Webhook", webhook_id))
    if webhook is None:
        raise NotFound(f"Webhook {webhook_id} does not exist.")
    return webhook


def webhook_events(*, session: Session, webhook_id: int) -> list[str]:
    """The event types a webhook receives, in catalogue order; ["*"] for "All events"."""
    webhook = session.get(Webhook, check_id("Webhook", webhook_id))
    if webhook is not None and webhook.all_events:
        return [ALL_EVENTS]
    chosen = set(session.exec(select(Subscription.event_type).where(Subscription.webhook_id == webhook_id)))
    return [name for name in catalog.event_type_names() if name in chosen]


def _not_operational(webhook: Webhook) -> None:
    if webhook.operational:
        raise InvalidInput({"webhook": "This is the operational webhook: an admin changes it on the Developers page."})


def webhook_to_change(*, session: Session, webhook_id: int) -> Webhook:
    """A webhook for a change or for its signing secret: never the operational one, which is an admin's alone."""
    webhook = get_webhook(session=session, webhook_id=webhook_id)
    _not_operational(webhook)
    return webhook


def update_webhook(
    *, session: Session, webhook_id: int, data: WebhookInput, actor: audit.Actor, client_address: str = ""
) -> Webhook:
    webhook = get_webhook(session=session, webhook_id=webhook_id)
    _not_operational(webhook)
    clean = validate(data, partial=True)
    before = _audited(session, webhook)
    if clean.name is not None:
        webhook.name = clean.name
    if clean.url is not None:
        webhook.url = clean.url
    webhook.search_text = _search_text(webhook.name, webhook.url)
    if clean.events is not None:
        session.exec(delete(Subscription).where(Subscription.webhook_id == webhook_id))
        _subscribe(session, webhook, clean.events)
    if data.headers is not None:
        webhook.headers = clean.headers
    if data.max_per_second is not None:
        webhook.max_per_second = clean.max_per_second
    if clean.status is not None and clean.status != webhook.status:
        set_status(session=session, webhook=webhook, status=clean.status)
    webhook.updated_at = utcnow()
    session.add(webhook)
    session.flush()
    after = _audited(session, webhook)
    if after != before:
        audit.record(
            session=session,
            actor=actor,
            action="webhook.edited",
            target=audit_target(webhook),
            detail={"before": before, "after": after},
            client_address=client_address,
        )
    return webhook


def set_status(*, session: Session, webhook: Webhook, status: str, reason: str | None = None) -> None:
    """Move a webhook to Live, Paused or Disabled, with what each change means for its deliveries.

    - Disabled: unfinished deliveries end as Failure (`reason` says why, when the console did it);
    - Paused: deliveries are still created and wait;
    - Live again: what waited goes out now, oldest first, and the failing clock starts afresh.
    """
    now = utcnow()
    webhook.status = status
    webhook.updated_at = now
    if status == WebhookStatus.DISABLED:
        webhook.disabled_reason, webhook.disabled_at = reason, now
        cancel_retries(session=session, webhook_id=webhook.id)
    else:
        webhook.disabled_reason = webhook.disabled_at = None
    if status == WebhookStatus.LIVE:
        webhook.failing_since = None
        doorbell.ring_on_commit(session.connection())  # every process's dispatcher looks at once
    session.add(webhook)


def cancel_retries(*, session: Session, webhook_id: int) -> int:
    """Finish every unfinished delivery of a webhook as Failure: nothing more is sent.

    An attempt already in flight completes, and the dispatcher then records
    it without scheduling another.
    """
    result = session.exec(
        update(Delivery)
        .where(Delivery.webhook_id == webhook_id, col(Delivery.next_attempt_at).is_not(None))
        .values(status=DeliveryStatus.FAILURE, next_attempt_at=None, recovery_id=None, updated_at=utcnow())
    )
    return result.rowcount


def delete_webhook(*, session: Session, webhook_id: int, actor: audit.Actor, client_address: str = "") -> None:
    """Remove the webhook, its deliveries with their attempts, and any scheduled retries."""
    webhook = get_webhook(session=session, webhook_id=webhook_id)
    _not_operational(webhook)
    audit.record(
        session=session,
        actor=actor,
        action="webhook.deleted",
        target=audit_target(webhook),
        detail={"before": _audited(session, webhook)},
        client_address=client_address,
    )
    remove_webhook_rows(session=session, webhook_id=webhook_id)


def remove_webhook_rows(*, session: Session, webhook_id: int) -> None:
    """The rows of a webhook and all that hangs on it; callers check who may and record why."""
    # Explicit rather than relying on ON DELETE CASCADE, which SQLite only
    # honours on connections that turned foreign keys on.
    deliveries = select(Delivery.id).where(Delivery.webhook_id == webhook_id)
    session.exec(delete(Attempt).where(col(Attempt.delivery_id).in_(deliveries)))
    session.exec(delete(Delivery).where(Delivery.webhook_id == webhook_id))
    session.exec(delete(Subscription).where(Subscription.webhook_id == webhook_id))
    session.exec(delete(PreviousSecret).where(PreviousSecret.webhook_id == webhook_id))
    session.exec(delete(Recovery).where(Recovery.webhook_id == webhook_id))
    session.exec(delete(Webhook).where(Webhook.id == webhook_id))


def list_webhooks(
    *,
    session: Session,
    search: str | None = None,
    page: int = 1,
    per_page: int = PAGE_SIZE,
    after: tuple[dt.datetime, int] | None = None,
) -> WebhookPage:
    """Webhooks newest first; `search` matches name or URL, ignoring case.

    `after` (the created_at and id of the last webhook seen) asks for the page
    after it, by keyset instead of `page`: webhooks created meanwhile never
    shift a caller's pages, so none is skipped or seen twice.
    """
    if isinstance(page, bool) or not isinstance(page, int) or page < 1:
        raise InvalidInput({"page": "Page must be 1 or more."})
    if page > ID_MAX:  # past every row there can be, and an offset the database could not take
        raise InvalidInput({"page": f"Page must be at most {ID_MAX:,}."})
    if isinstance(per_page, bool) or not isinstance(per_page, int) or not 1 <= per_page <= 100:
        raise InvalidInput({"per_page": "Page size must be between 1 and 100."})
    # The operational webhook is an admin's, shown on the Developers page.
    query = select(Webhook).where(col(Webhook.operational).is_(False))
    count = select(func.count()).select_from(Webhook).where(col(Webhook.operational).is_(False))
    term = (search or "").strip().lower()
    if "\x00" in term or LONE_SURROGATE.search(term):
        # No name or URL can hold these, and databases refuse them as query text.
        return WebhookPage(items=[], total=0, page=page, per_page=per_page)
    if term:
        # Escape LIKE wildcards so "100%" means the text, not a pattern.
        pattern = "%" + term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        match = col(Webhook.search_text).like(pattern, escape="\\")
        query = query.where(match)
        count = count.where(match)
    total = session.exec(count).one()
    if after is not None:
        created_at, webhook_id = after
        query = query.where(
            or_(
                col(Webhook.created_at) < created_at,
                and_(col(Webhook.created_at) == created_at, col(Webhook.id) < webhook_id),
            )
        )
    else:
        query = query.offset((page - 1) * per_page)
    items = list(
        session.exec(query.order_by(col(Webhook.created_at).desc(), col(Webhook.id).desc()).limit(per_page + 1)).all()
    )
    more, items = len(items) > per_page, items[:per_page]
    return WebhookPage(
        items=items,
        total=total,
        page=page,
        per_page=per_page,
        next_after=(items[-1].created_at, items[-1].id) if more else None,
    )


def reveal_secret(
    *, session: Session, webhook_id: int, actor: audit.Actor, copied: bool = False, client_address: str = ""
) -> Webhook:
    """A webhook whose secret a member asked to see (or copy): the read is recorded in the audit trail."""
    webhook = webhook_to_change(session=session, webhook_id=webhook_id)
    audit.record(
        session=session,
        actor=actor,
        action="secret.copied" if copied else "secret.revealed",
        target=audit_target(webhook),
        client_address=client_address,
    )
    return webhook


def rotate_secret(*, session: Session, webhook_id: int, actor: audit.Actor, client_address: str = "") -> Webhook:
    """A new signing secret; the one it replaces keeps signing alongside it for a day.

    Secrets replaced by earlier rotations keep signing too until their own day
    ends, so a second rotation never cuts off a receiver still on the first secret.
    """
    webhook = webhook_to_change(session=session, webhook_id=webhook_id)
    now = utcnow()
    session.exec(
        delete(PreviousSecret).where(PreviousSecret.webhook_id == webhook_id, col(PreviousSecret.expires_at) <= now)
    )
    previous = PreviousSecret(webhook_id=webhook_id, secret=webhook.secret, expires_at=now + ROTATION_OVERLAP)
    session.add(previous)
    webhook.secret = new_secret()
    webhook.updated_at = now
    session.add(webhook)
    session.flush()
    audit.record(
        session=session,
        actor=actor,
        action="secret.rotated",
        target=audit_target(webhook),
        detail={"previous_secret_expires_at": iso(previous.expires_at)},
        client_address=client_address,
    )
    return webhook


def previous_secrets(*, session: Session, webhook_id: int, now: dt.datetime | None = None) -> list[PreviousSecret]:
    """Replaced secrets that still sign (their overlap has not ended), newest first."""
    check_id("Webhook", webhook_id)
    now = now or utcnow()
    return list(
        session.exec(
            select(PreviousSecret)
            .where(PreviousSecret.webhook_id == webhook_id, col(PreviousSecret.expires_at) > now)
            .order_by(col(PreviousSecret.expires_at).desc(), col(PreviousSecret.id).desc())
        )
    )


__all__ = [
    "WebhookInput",
    "WebhookPage",
    "cancel_retries",
    "create_webhook",
    "delete_webhook",
    "get_webhook",
    "list_webhooks",
    "previous_secrets",
    "reveal_secret",
    "rotate_secret",
    "update_webhook",
    "validate",
    "webhook_events",
]
