"""initial: cases, evidence, audit, counters

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "cases",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("number", sa.String(32), nullable=False),
        sa.Column("external_id", sa.String(128), nullable=True),
        sa.Column("source", sa.String(8), nullable=False),
        sa.Column("kind", sa.String(4), nullable=False),
        sa.Column("code", sa.String(5), nullable=False),
        sa.Column("title", sa.String(64), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("address", sa.String(256), nullable=False),
        sa.Column("lat", sa.Float(), nullable=True),
        sa.Column("lon", sa.Float(), nullable=True),
        sa.Column("cell", sa.BigInteger(), nullable=True),
        sa.Column("district_id", sa.String(16), nullable=True),
        sa.Column("street_id", sa.String(16), nullable=True),
        sa.Column("grid_id", sa.String(20), nullable=True),
        sa.Column("context", sa.String(16), nullable=True),
        sa.Column("owner", sa.String(16), nullable=True),
        sa.Column("urgency", sa.String(4), nullable=False),
        sa.Column("risk_level", sa.String(2), nullable=False),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("department_id", sa.String(32), nullable=True),
        sa.Column("route_rule", sa.String(32), nullable=True),
        sa.Column("route_principle", sa.String(16), nullable=True),
        sa.Column("route_note", sa.Text(), nullable=True),
        sa.Column("deadline", TS, nullable=True),
        sa.Column("reporter_name", sa.String(64), nullable=True),
        sa.Column("reporter_phone", sa.String(32), nullable=True),
        sa.Column("duplicate_of", sa.String(32), nullable=True),
        sa.Column("rework_count", sa.Integer(), nullable=False),
        sa.Column("rating", sa.Integer(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("closed_at", TS, nullable=True),
        sa.UniqueConstraint("number"),
        sa.UniqueConstraint("external_id"),
    )
    op.create_index("ix_cases_cell_code", "cases", ["cell", "code"])
    op.create_index("ix_cases_status_department", "cases", ["status", "department_id"])
    op.create_index("ix_cases_deadline", "cases", ["deadline"])
    op.create_index("ix_cases_created_at", "cases", ["created_at"])
    op.create_index("ix_cases_code_created", "cases", ["code", "created_at"])

    op.create_table(
        "case_evidence",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("case_id", sa.BigInteger(), sa.ForeignKey("cases.id", ondelete="CASCADE"), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("uri", sa.Text(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=True),
        sa.Column("captured_at", TS, nullable=True),
        sa.Column("added_at", TS, nullable=False),
        sa.Column("added_by", sa.String(64), nullable=False),
    )
    op.create_index("ix_case_evidence_case_id", "case_evidence", ["case_id"])

    op.create_table(
        "case_audit",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("case_id", sa.BigInteger(), sa.ForeignKey("cases.id", ondelete="CASCADE"), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("from_status", sa.String(8), nullable=True),
        sa.Column("to_status", sa.String(8), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
    )
    op.create_index("ix_case_audit_case_id", "case_audit", ["case_id"])

    op.create_table(
        "case_counters",
        sa.Column("scope", sa.String(16), primary_key=True),
        sa.Column("day", sa.String(8), primary_key=True),
        sa.Column("last", sa.Integer(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("case_counters")
    op.drop_table("case_audit")
    op.drop_table("case_evidence")
    op.drop_table("cases")
