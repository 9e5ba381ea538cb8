"""list and filter indexes: what the API, the chat tools and the statistics ask for

Measured with EXPLAIN (ANALYZE) on PostgreSQL at 1M cases and ~5M audit rows
(benchmarks/bench_queries.py; figures in docs/scale.md):

- ``(created_at, id)`` replaces ``(created_at)``: the exact order of every case
  list (newest first, id breaking ties), so no sort step, keyset pages
  (``Store.list(after=...)``) and deep offsets read the index only;
- ``(department_id, created_at)``: a department user's list and counts (every
  request of a 责任单位 account is filtered by its department), stats by
  department; before, a department's page at offset 2000 walked the whole
  table's date index;
- ``(district_id, created_at)``, ``(street_id, created_at)``: the area filters
  of the API, the chat (``find_cases`` by 区/街道) and ``xunjian stats``;
- ``(status, deadline)`` replaces ``(deadline)``: overdue and due-soon cases
  (``Store.due``/``due_counts``, ``overdue=true``, the SLA ticks) are always
  "held by a department (派遣, 处置中) and deadline before …";
- ``case_audit (action, at)``: 立案/评价 counted by period (``city.stats``).

Plain CREATE INDEX (migrations run in one transaction, see city.store.db.migrate):
a few seconds per million cases, writes wait meanwhile.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25
"""
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # IF NOT EXISTS: on a big live database the indexes can be built beforehand with
    # CREATE INDEX CONCURRENTLY under these names (docs/scale.md); this then only drops the two replaced
    new = [("ix_cases_created_id", "cases", ["created_at", "id"]),
           ("ix_cases_status_deadline", "cases", ["status", "deadline"]),
           ("ix_cases_department_created", "cases", ["department_id", "created_at"]),
           ("ix_cases_district_created", "cases", ["district_id", "created_at"]),
           ("ix_cases_street_created", "cases", ["street_id", "created_at"]),
           ("ix_case_audit_action_at", "case_audit", ["action", "at"])]
    for name, table, cols in new:
        op.create_index(name, table, cols, if_not_exists=True)
    op.drop_index("ix_cases_created_at", table_name="cases", if_exists=True)  # a prefix of (created_at, id)
    op.drop_index("ix_cases_deadline", table_name="cases", if_exists=True)  # only ever asked with the status


def downgrade() -> None:
    op.drop_index("ix_case_audit_action_at", table_name="case_audit")
    op.drop_index("ix_cases_street_created", table_name="cases")
    op.drop_index("ix_cases_district_created", table_name="cases")
    op.drop_index("ix_cases_department_created", table_name="cases")
    op.create_index("ix_cases_deadline", "cases", ["deadline"])
    op.drop_index("ix_cases_status_deadline", table_name="cases")
    op.create_index("ix_cases_created_at", "cases", ["created_at"])
    op.drop_index("ix_cases_created_id", table_name="cases")
