"""batches, batch_files, observations: the vision pipeline's output

A batch is a folder of footage; each file is recorded done or failed with its
sha256 (so a re-run skips finished files), and each physical issue seen in it
is one observation row, written in the same transaction as its file's row.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "batches",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("source", sa.String(8), nullable=False),
        sa.Column("platform_id", sa.String(64), nullable=True),
        sa.Column("root", sa.Text(), nullable=False),
        sa.Column("manifest", sa.JSON(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_table(
        "batch_files",
        sa.Column("batch_id", sa.String(128), sa.ForeignKey("batches.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("path", sa.String(512), primary_key=True),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("observations", sa.Integer(), nullable=False),
        sa.Column("stats", sa.JSON(), nullable=False),
        sa.Column("finished_at", TS, nullable=False),
    )
    op.create_table(
        "observations",
        sa.Column("id", sa.String(160), primary_key=True),
        sa.Column("batch_id", sa.String(128), sa.ForeignKey("batches.id", ondelete="CASCADE"), nullable=False),
        sa.Column("file", sa.String(512), nullable=False),
        sa.Column("file_sha256", sa.String(64), nullable=False),
        sa.Column("source", sa.String(8), nullable=False),
        sa.Column("platform_id", sa.String(64), nullable=True),
        sa.Column("class_name", sa.String(64), nullable=False),
        sa.Column("label_zh", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(4), nullable=True),
        sa.Column("code", sa.String(5), nullable=True),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("mean_confidence", sa.Float(), nullable=False),
        sa.Column("lat", sa.Float(), nullable=False),
        sa.Column("lon", sa.Float(), nullable=False),
        sa.Column("cell", sa.BigInteger(), nullable=False),
        sa.Column("error_m", sa.Float(), nullable=False),
        sa.Column("frames", sa.Integer(), nullable=False),
        sa.Column("first_t", sa.Float(), nullable=False),
        sa.Column("last_t", sa.Float(), nullable=False),
        sa.Column("best_t", sa.Float(), nullable=False),
        sa.Column("seen_at", TS, nullable=True),
        sa.Column("box", sa.JSON(), nullable=False),
        sa.Column("frame_uri", sa.Text(), nullable=True),
        sa.Column("crop_uri", sa.Text(), nullable=True),
        sa.Column("model", sa.String(64), nullable=False),
        sa.Column("case_number", sa.String(32), nullable=True),
    )
    op.create_index("ix_observations_batch_file", "observations", ["batch_id", "file"])
    op.create_index("ix_observations_cell_code", "observations", ["cell", "code"])


def downgrade() -> None:
    op.drop_table("observations")
    op.drop_table("batch_files")
    op.drop_table("batches")
