"""The Audit trail page (admins, hosted mode): newest first, filters by member and action, keyset pages."""

from __future__ import annotations

import reflex as rx

from kwik_console.team import audit
from kwik_console.ui.components.common import loading_rows, page
from kwik_console.ui.components.dates import when
from kwik_console.ui.state.audit import ALL
from kwik_console.ui.state.audit import AuditState as A
from kwik_console.ui.views import AuditDetailLine, AuditRow

COLUMNS = ("When", "Member", "Action", "Target", "Details")


# Below 480 px the five columns would scroll sideways: one cell holds the entry, read top to bottom.
PHONE_ONLY, WIDE_ONLY = ["table-cell", "none"], ["none", "table-cell"]


def _value(text: rx.Var, at: rx.Var) -> rx.Component:
    return rx.cond(at != "", when(at), rx.text(text, as_="span"))


def _detail_line(line: AuditDetailLine) -> rx.Component:
    return rx.text(
        line.label,
        ": ",
        rx.cond(line.change, rx.fragment(_value(line.was, line.was_at), " → ")),
        _value(line.value, line.value_at),
        size="1",
        color_scheme="gray",
        style={"word_break": "break-word"},
    )


def _details(row: AuditRow, **props) -> rx.Component:
    return rx.vstack(rx.foreach(row.detail, _detail_line), spacing="0", **props)


def _row(row: AuditRow) -> rx.Component:
    return rx.table.row(
        rx.table.cell(
            rx.vstack(
                rx.text(row.action, size="2", weight="medium"),
                rx.cond(row.target != "", rx.text(row.target, size="2", style={"word_break": "break-word"})),
                rx.text(row.actor, " · ", when(row.at), size="1", color_scheme="gray"),
                _details(row),
                spacing="1",
            ),
            display=PHONE_ONLY,
        ),
        rx.table.cell(when(row.at), white_space="nowrap", display=WIDE_ONLY),
        rx.table.cell(rx.text(row.actor, size="2"), display=WIDE_ONLY),
        rx.table.cell(rx.text(row.action, size="2", weight="medium"), white_space="nowrap", display=WIDE_ONLY),
        rx.table.cell(rx.text(row.target, size="2", style={"word_break": "break-word"}), display=WIDE_ONLY),
        rx.table.cell(_details(row, title=row.client_address), display=WIDE_ONLY),
        align="center",
    )


def _filters() -> rx.Component:
    return rx.hstack(
        rx.select.root(
            rx.select.trigger(aria_label="Member", min_width="200px"),
            rx.select.content(
                rx.select.item("All members", value=ALL), rx.foreach(A.actors, lambda e: rx.select.item(e, value=e))
            ),
            value=A.actor,
            on_change=A.set_actor,
        ),
        rx.select.root(
            rx.select.trigger(aria_label="Action", min_width="200px"),
            rx.select.content(
                rx.select.item("All actions", value=ALL),
                *[rx.select.item(label, value=key) for key, label in audit.ACTIONS.items()],
            ),
            value=A.action,
            on_change=A.set_action,
        ),
        spacing="3",
        wrap="wrap",
    )


def audit_page() -> rx.Component:
    return page(
        rx.vstack(
            rx.vstack(
                rx.heading("Audit trail", size="7"),
                rx.text(
                    "Every change, sign-in and revealed secret: who, when and what, newest first.",
                    color_scheme="gray",
                    size="2",
                ),
                spacing="1",
            ),
            _filters(),
            rx.box(
                rx.table.root(
                    rx.table.header(
                        rx.table.row(
                            rx.table.column_header_cell("Entry", display=PHONE_ONLY),
                            *[rx.table.column_header_cell(c, display=WIDE_ONLY) for c in COLUMNS],
                        )
                    ),
                    rx.table.body(rx.cond(A.loading, loading_rows(len(COLUMNS)), rx.foreach(A.rows, _row))),
                    variant="surface",
                    width="100%",
                    size="2",
                ),
                width="100%",
                overflow_x="auto",
            ),
            rx.cond(
                ~A.loading & (A.rows.length() == 0),
                rx.text("Nothing recorded matches these filters.", size="2", color_scheme="gray"),
            ),
            rx.hstack(
                rx.spacer(),
                rx.button("Newer", size="1", variant="soft", on_click=A.newer, disabled=A.cursors.length() == 0),
                rx.text("Page " + A.page_number.to_string(), size="2", white_space="nowrap"),
                rx.button("Older", size="1", variant="soft", on_click=A.older, disabled=A.next_before == 0),
                width="100%",
                align="center",
                spacing="3",
            ),
            spacing="4",
            width="100%",
        ),
    )
