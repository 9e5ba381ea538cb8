"""views, verifications, notifications: closing the loop

``views``: every sampled frame of a batch with the camera's position and
pointing, so 核查 can tell "not seen" from "not looked at". ``verifications``:
one 核查 decision per (case, batch). ``notifications``: warnings and
escalations (即将超期, 已超期, 督办), each sent once per key. And an index on
``case_audit.at`` for statistics by period.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_index("ix_case_audit_at", "case_audit", ["at"])
    op.create_table(
        "views",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("batch_id", sa.String(128), sa.ForeignKey("batches.id", ondelete="CASCADE"), nullable=False),
        sa.Column("file", sa.String(512), nullable=False),
        sa.Column("t", sa.Float(), nullable=False),
        sa.Column("utc", TS, nullable=True),
        sa.Column("lat", sa.Float(), nullable=False),
        sa.Column("lon", sa.Float(), nullable=False),
        sa.Column("cell", sa.BigInteger(), nullable=False),
        sa.Column("heading", sa.Float(), nullable=True),
        sa.Column("yaw", sa.Float(), nullable=True),
        sa.Column("alt", sa.Float(), nullable=True),
        sa.Column("pitch", sa.Float(), nullable=True),
    )
    op.create_index("ix_views_batch_file", "views", ["batch_id", "file"])
    op.create_index("ix_views_cell", "views", ["cell"])
    op.create_table(
        "verifications",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("case_id", sa.BigInteger(), sa.ForeignKey("cases.id", ondelete="CASCADE"), nullable=False),
        sa.Column("batch_id", sa.String(128), sa.ForeignKey("batches.id", ondelete="CASCADE"), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("frames", sa.Integer(), nullable=False),
        sa.Column("coverage", sa.Float(), nullable=False),
        sa.Column("observations", sa.JSON(), nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("status_before", sa.String(8), nullable=False),
        sa.Column("status_after", sa.String(8), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
    )
    op.create_index("ux_verifications_case_batch", "verifications", ["case_id", "batch_id"], unique=True)
    op.create_index("ix_verifications_batch", "verifications", ["batch_id"])
    op.create_table(
        "notifications",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(160), nullable=False, unique=True),
        sa.Column("case_id", sa.BigInteger(), sa.ForeignKey("cases.id", ondelete="CASCADE"), nullable=False),
        sa.Column("rule", sa.String(32), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("recipient", sa.String(64), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("deadline", TS, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("acknowledged_at", TS, nullable=True),
        sa.Column("acknowledged_by", sa.String(64), nullable=True),
    )
    op.create_index("ix_notifications_case_id", "notifications", ["case_id"])
    op.create_index("ix_notifications_recipient_created", "notifications", ["recipient", "created_at"])


def downgrade() -> None:
    op.drop_table("notifications")
    op.drop_table("verifications")
    op.drop_table("views")
    op.drop_index("ix_case_audit_at", table_name="case_audit")
