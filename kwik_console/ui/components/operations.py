"""Operating a webhook: the auto-disable banner, the failing badge, "Recover failed since…" and its progress."""

from __future__ import annotations

import reflex as rx

from kwik_console.events import catalog
from kwik_console.ui.components.common import field_error, status_badge
from kwik_console.ui.components.dates import when
from kwik_console.ui.state.operations import ALL, HealthState
from kwik_console.ui.state.operations import RecoverState as R
from kwik_console.ui.state.operations import RecoveryProgressState as Shown
from kwik_console.ui.state.session import SessionState
from kwik_console.ui.state.webhook_page import WebhookPageState as P

RECOVER_LABEL = "Recover failed since…"


def failing_badge(since: rx.Var) -> rx.Component:
    """Every attempt has failed for a while (health.failing_after): shown well before the console disables it."""
    return rx.badge(
        rx.icon("triangle-alert", size=12),
        "Failing since ",
        when(since, "minutes"),
        color_scheme="amber",
        variant="soft",
        high_contrast=True,
        radius="full",
    )


def disabled_banner(
    webhook_id: rx.Var,
    name: rx.Var | None,
    disabled_at: rx.Var,
    reason: rx.Var,
    on_recover,
    failing_since: rx.Var | str = "",
) -> rx.Component:
    """ "Disabled automatically: <reason>", its times in the viewer's zone, with Re-enable and Recover right there."""
    return rx.callout.root(
        rx.callout.icon(rx.icon("circle-alert")),
        rx.flex(
            rx.box(
                rx.text(
                    *([rx.text.strong(name), ": "] if name is not None else []),
                    "Disabled automatically: ",
                    reason,
                    size="2",
                ),
                rx.text(
                    "Disabled ",
                    when(disabled_at, "minutes"),
                    rx.cond(failing_since != "", rx.fragment(" · failing since ", when(failing_since, "minutes"))),
                    size="1",
                    high_contrast=True,
                ),
                rx.text(
                    "Nothing is sent to it until it is re-enabled. Recover what failed once the endpoint works again.",
                    size="1",
                    color_scheme="gray",
                    high_contrast=True,
                ),
                flex="1",
                min_width="240px",
            ),
            rx.cond(
                SessionState.can_pause | SessionState.can_recover,
                rx.hstack(
                    rx.cond(
                        SessionState.can_pause,
                        rx.button(
                            rx.icon("power", size=14),
                            "Re-enable",
                            size="2",
                            color_scheme="red",
                            high_contrast=True,
                            on_click=HealthState.resume(webhook_id),
                        ),
                    ),
                    rx.cond(
                        SessionState.can_recover,
                        rx.button(
                            rx.icon("rotate-ccw", size=14),
                            RECOVER_LABEL,
                            size="2",
                            variant="soft",
                            color_scheme="red",
                            high_contrast=True,
                            on_click=on_recover,
                        ),
                    ),
                    spacing="2",
                    wrap="wrap",
                ),
            ),
            gap="12px",
            align="center",
            wrap="wrap",
            width="100%",
        ),
        # High contrast: red-11 text on the callout's red tint measures under 4.5:1 in the light theme.
        color_scheme="red",
        high_contrast=True,
        role="alert",
        width="100%",
        aria_label="Disabled automatically",
    )


def _labelled(label: str, html_for: str, control: rx.Component, error: rx.Var) -> rx.Component:
    return rx.vstack(
        rx.el.label(rx.text(label, size="2", weight="medium"), html_for=html_for),
        control,
        field_error(error),
        spacing="1",
        width="100%",
    )


def recover_dialog() -> rx.Component:
    return rx.dialog.root(
        rx.dialog.content(
            rx.dialog.title("Recover failed deliveries"),
            rx.dialog.description(
                rx.text(
                    "Send the failed deliveries of “",
                    rx.text.strong(P.name),
                    "” created since this time again, "
                    "in one job on the server. A delivery that has succeeded since is never sent twice.",
                ),
                size="2",
                color_scheme="gray",
                margin_bottom="16px",
            ),
            rx.form(
                rx.vstack(
                    _labelled(
                        "Failed since",
                        "recover-since",
                        rx.input(
                            id="recover-since",
                            type="datetime-local",
                            value=R.since_local,
                            on_change=R.set_since,
                            width="100%",
                            aria_describedby="recover-since-help",
                            aria_invalid=rx.cond(R.errors["since"] != "", "true", "false"),
                        ),
                        R.errors["since"],
                    ),
                    rx.text(
                        "In your time zone",
                        rx.cond(P.time_zone != "", " (" + P.time_zone + ")", ""),
                        ". The default is 24 hours ago.",
                        id="recover-since-help",
                        size="1",
                        color_scheme="gray",
                    ),
                    rx.grid(
                        _labelled(
                            "Event type",
                            "recover-event-type",
                            rx.select.root(
                                rx.select.trigger(id="recover-event-type", width="100%"),
                                rx.select.content(
                                    rx.select.item("All event types", value=ALL),
                                    *[rx.select.item(n, value=n) for n in catalog.event_type_names()],
                                ),
                                value=R.event_type,
                                on_change=R.set_event_type,
                            ),
                            R.errors["event_types"],
                        ),
                        _labelled(
                            "Status",
                            "recover-status",
                            rx.select.root(
                                rx.select.trigger(id="recover-status", width="100%"),
                                rx.select.content(
                                    rx.select.item("Failure", value="failure"),
                                    rx.select.item("Retrying", value="retrying"),
                                    rx.select.item("Failure and Retrying", value="both"),
                                ),
                                value=R.statuses,
                                on_change=R.set_statuses,
                            ),
                            R.errors["statuses"],
                        ),
                        columns=rx.breakpoints(initial="1", sm="2"),
                        spacing="3",
                        width="100%",
                    ),
                    rx.cond(
                        R.errors["webhook"] != "",
                        rx.callout.root(
                            rx.callout.icon(rx.icon("triangle-alert")),
                            rx.callout.text(R.errors["webhook"]),
                            color_scheme="red",
                            role="alert",
                            width="100%",
                        ),
                    ),
                    rx.hstack(
                        rx.dialog.close(
                            rx.button("Cancel", variant="soft", color_scheme="gray", type="button", disabled=R.starting)
                        ),
                        rx.button("Start", type="submit", loading=R.starting),
                        justify="end",
                        spacing="3",
                        width="100%",
                        padding_top="8px",
                    ),
                    spacing="3",
                    width="100%",
                ),
                on_submit=lambda _: R.start(),
                reset_on_submit=False,
                no_validate=True,
            ),
            max_width="560px",
        ),
        open=R.open,
        on_open_change=R.set_open,
    )


def _count(label: str, value: rx.Var, tone: rx.Var | str = "gray") -> rx.Component:
    return rx.vstack(
        rx.text(label, size="1", color_scheme="gray", weight="medium"),
        rx.text(value.to_string(), size="5", weight="bold", color_scheme=tone, high_contrast=True),
        spacing="0",
        min_width="88px",
    )


def recovery_panel() -> rx.Component:
    """The webhook's running (else latest) recovery; it refreshes every second while it runs."""
    p = Shown.progress
    with_failures = (p.state == "Finished") & (p.failed > 0)
    return rx.card(
        # The timer exists only while the job runs: once it is done, nothing polls.
        rx.cond(p.running, rx.moment(interval=1000, on_change=Shown.refresh, display="none")),
        rx.vstack(
            rx.hstack(
                rx.heading("Recovery", size="3", as_="h2"),
                rx.cond(
                    with_failures,
                    rx.badge("Finished with failures", color_scheme="amber", variant="soft", high_contrast=True),
                    status_badge(p.state),
                ),
                rx.spacer(),
                rx.cond(
                    p.running & SessionState.can_recover,
                    rx.button(
                        "Cancel recovery",
                        size="1",
                        variant="soft",
                        color_scheme="red",
                        high_contrast=True,
                        on_click=R.cancel,
                    ),
                ),
                rx.cond(
                    ~p.running,
                    rx.icon_button(
                        rx.icon("x", size=16),
                        size="1",
                        variant="ghost",
                        color_scheme="gray",
                        aria_label="Dismiss the recovery",
                        on_click=Shown.dismiss,
                    ),
                ),
                width="100%",
                align="center",
                spacing="3",
            ),
            rx.text(
                p.filters,
                ", created since ",
                when(p.since, "minutes"),
                " · started by ",
                p.created_by,
                size="1",
                color_scheme="gray",
            ),
            rx.progress(
                value=p.percent,
                max=100,
                width="100%",
                size="3",
                color_scheme=rx.cond(p.failed > 0, "orange", "green"),
                aria_label="Recovery progress",
                aria_valuetext=p.sent.to_string() + " of " + p.total.to_string() + " sent",
            ),
            rx.text(
                p.sent.to_string() + " of " + p.total.to_string() + " sent · " + p.percent.to_string() + " %",
                size="2",
                weight="medium",
            ),
            rx.flex(
                _count("Queued", p.queued),
                _count("Sent", p.sent),
                _count("Succeeded", p.succeeded, rx.cond(p.succeeded > 0, "green", "gray")),
                _count("Failed", p.failed, rx.cond(p.failed > 0, "red", "gray")),
                wrap="wrap",
                gap="16px",
            ),
            rx.cond(
                with_failures,
                rx.callout.root(
                    rx.callout.icon(rx.icon("triangle-alert")),
                    rx.callout.text(
                        p.failed.to_string()
                        + " of "
                        + p.sent.to_string()
                        + " sent failed again ("
                        + p.succeeded.to_string()
                        + " succeeded). Check the endpoint, then recover again."
                    ),
                    color_scheme="amber",
                    size="1",
                    width="100%",
                ),
            ),
            rx.cond(
                ~p.running & (p.finished_at != ""),
                rx.text(p.state, " ", when(p.finished_at), size="1", color_scheme="gray"),
            ),
            spacing="2",
            width="100%",
        ),
        width="100%",
        role="region",
        aria_label="Recovery",
    )
