"""dedupe index: (cell, code, created_at) replaces (cell, code)

The dedupe lookup (``Store.nearby_open``) asks for open cases of some codes in
a few cells *created since a date* (the last 30 days). With ``(cell, code)``
every case of those codes ever filed in those cells (a year and more of closed
ones) was fetched from the table to test its date; at hot spots of a store
with millions of cases that is thousands of rows and tens of milliseconds per
lookup. With ``created_at`` in the index the date range is an index range and
only recent rows are read. ``(cell, code)`` is a prefix of the new index, so
it is dropped. See benchmarks/README.md for the figures.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # a plain CREATE INDEX: migrations run in one transaction (see city.store.db.migrate),
    # so no CONCURRENTLY; it takes seconds per million cases and blocks writes meanwhile
    op.create_index("ix_cases_cell_code_created", "cases", ["cell", "code", "created_at"])
    op.drop_index("ix_cases_cell_code", table_name="cases")


def downgrade() -> None:
    op.create_index("ix_cases_cell_code", "cases", ["cell", "code"])
    op.drop_index("ix_cases_cell_code_created", table_name="cases")
