"""The webhook's legacy previous-secret columns dropped: rotation keeps replaced secrets in previous_secret.

Migration 0002 moved the one previous secret a release kept on the webhook row
to previous_secret and emptied these columns; nothing has written them since but
None. The downgrade adds them back, empty, as the code before this wrote them.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("webhook", schema=None) as batch_op:
        batch_op.drop_column("previous_secret_expires_at")
        batch_op.drop_column("previous_secret")


def downgrade() -> None:
    with op.batch_alter_table("webhook", schema=None) as batch_op:
        batch_op.add_column(sa.Column("previous_secret", sa.String(), nullable=True))
        batch_op.add_column(sa.Column("previous_secret_expires_at", sa.DateTime(timezone=True), nullable=True))
