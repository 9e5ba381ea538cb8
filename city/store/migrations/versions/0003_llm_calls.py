"""llm_calls: every request to an LLM endpoint, with tokens and latency

One row per attempt (a retried call has several, sharing ``call_id``), so
``xunjian cases trace CASE`` shows every prompt and response of a case and the
cost per case is a sum over ``case_ref``.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "llm_calls",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("at", TS, nullable=False),
        sa.Column("call_id", sa.String(32), nullable=False),
        sa.Column("step", sa.String(32), nullable=False),
        sa.Column("case_ref", sa.String(128), nullable=True),
        sa.Column("backend", sa.String(16), nullable=False),
        sa.Column("model", sa.String(128), nullable=True),
        sa.Column("host", sa.String(255), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("prompt_tokens", sa.Integer(), nullable=True),
        sa.Column("completion_tokens", sa.Integer(), nullable=True),
        sa.Column("latency_ms", sa.Integer(), nullable=False),
        sa.Column("request", sa.JSON(), nullable=False),
        sa.Column("response", sa.Text(), nullable=True),
    )
    op.create_index("ix_llm_calls_case_ref", "llm_calls", ["case_ref"])


def downgrade() -> None:
    op.drop_table("llm_calls")
