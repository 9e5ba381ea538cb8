"""The store's tables (SQLAlchemy 2.0). Changes go through an Alembic migration
in ``city/store/migrations/versions``."""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# SQLite autoincrements only INTEGER PRIMARY KEY; PostgreSQL gets BIGINT identities.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator):
    """Aware datetimes in, aware UTC datetimes out, on SQLite as on PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use an aware datetime")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


class Base(DeclarativeBase):
    pass


class CaseRow(Base):
    __tablename__ = "cases"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    number: Mapped[str] = mapped_column(String(32), unique=True)
    external_id: Mapped[str | None] = mapped_column(String(128), unique=True)
    source: Mapped[str] = mapped_column(String(8))
    kind: Mapped[str] = mapped_column(String(4))
    code: Mapped[str] = mapped_column(String(5))
    title: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(Text)
    address: Mapped[str] = mapped_column(String(256), default="")
    lat: Mapped[float | None] = mapped_column(Float)
    lon: Mapped[float | None] = mapped_column(Float)
    cell: Mapped[int | None] = mapped_column(BigInteger)  # city.geo.cell_of(lat, lon): the spatial index
    district_id: Mapped[str | None] = mapped_column(String(16))
    street_id: Mapped[str | None] = mapped_column(String(16))
    grid_id: Mapped[str | None] = mapped_column(String(20))
    context: Mapped[str | None] = mapped_column(String(16))
    owner: Mapped[str | None] = mapped_column(String(16))
    urgency: Mapped[str] = mapped_column(String(4))
    risk_level: Mapped[str] = mapped_column(String(2))
    status: Mapped[str] = mapped_column(String(8))
    department_id: Mapped[str | None] = mapped_column(String(32))
    route_rule: Mapped[str | None] = mapped_column(String(32))
    route_principle: Mapped[str | None] = mapped_column(String(16))
    route_note: Mapped[str | None] = mapped_column(Text)
    deadline: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reporter_name: Mapped[str | None] = mapped_column(String(64))
    reporter_phone: Mapped[str | None] = mapped_column(String(32))
    duplicate_of: Mapped[str | None] = mapped_column(String(32))
    rework_count: Mapped[int] = mapped_column(Integer, default=0)
    rating: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index("ix_cases_cell_code_created", "cell", "code", "created_at"),  # the dedupe lookup (migration 0002)
        Index("ix_cases_status_department", "status", "department_id"),
        Index("ix_cases_code_created", "code", "created_at"),
        Index("ix_cases_source_created", "source", "created_at"),  # migration 0006
        # migration 0007: the lists' order and filters (docs/scale.md)
        Index("ix_cases_created_id", "created_at", "id"),
        Index("ix_cases_status_deadline", "status", "deadline"),
        Index("ix_cases_department_created", "department_id", "created_at"),
        Index("ix_cases_district_created", "district_id", "created_at"),
        Index("ix_cases_street_created", "street_id", "created_at"),
    )


class EvidenceRow(Base):
    __tablename__ = "case_evidence"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("cases.id", ondelete="CASCADE"), index=True)  # as in 0001
    kind: Mapped[str] = mapped_column(String(8))
    uri: Mapped[str] = mapped_column(Text)
    note: Mapped[str] = mapped_column(Text, default="")
    sha256: Mapped[str | None] = mapped_column(String(64))
    captured_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    added_at: Mapped[datetime] = mapped_column(UTCDateTime)
    added_by: Mapped[str] = mapped_column(String(64))


class AuditRow(Base):
    __tablename__ = "case_audit"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("cases.id", ondelete="CASCADE"), index=True)  # as in 0001
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(16))
    from_status: Mapped[str | None] = mapped_column(String(8))
    to_status: Mapped[str] = mapped_column(String(8))
    note: Mapped[str] = mapped_column(Text, default="")
    data: Mapped[dict] = mapped_column(JSON, default=dict)

    __table_args__ = (
        Index("ix_case_audit_at", "at"),  # statistics by period (migration 0005)
        Index("ix_case_audit_action_at", "action", "at"),  # 立案/评价 by period (migration 0007)
    )


class CounterRow(Base):
    """Per-district, per-day sequence for human-readable case numbers."""

    __tablename__ = "case_counters"

    scope: Mapped[str] = mapped_column(String(16), primary_key=True)
    day: Mapped[str] = mapped_column(String(8), primary_key=True)
    last: Mapped[int] = mapped_column(Integer)


class LlmCallRow(Base):
    """One request to an LLM endpoint (every attempt, failed ones too): what was
    asked, what came back, tokens and latency (migration 0003). Read by
    ``agents.llm.SqlCallLog`` for ``xunjian cases trace`` and cost per case."""

    __tablename__ = "llm_calls"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    call_id: Mapped[str] = mapped_column(String(32))  # the attempts of one logical call share it
    step: Mapped[str] = mapped_column(String(32))
    case_ref: Mapped[str | None] = mapped_column(String(128), index=True)
    backend: Mapped[str] = mapped_column(String(16))
    model: Mapped[str | None] = mapped_column(String(128))
    host: Mapped[str | None] = mapped_column(String(255))  # host[:port] of the base URL only
    attempt: Mapped[int] = mapped_column(Integer)
    ok: Mapped[bool] = mapped_column(Boolean)
    error: Mapped[str | None] = mapped_column(Text)
    prompt_tokens: Mapped[int | None] = mapped_column(Integer)
    completion_tokens: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[int] = mapped_column(Integer)
    request: Mapped[dict] = mapped_column(JSON)  # messages, schema name, tools, parameters; never the key
    response: Mapped[str | None] = mapped_column(Text)


class BatchRow(Base):
    """An ingest batch of footage (migration 0004)."""

    __tablename__ = "batches"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    source: Mapped[str] = mapped_column(String(8))
    platform_id: Mapped[str | None] = mapped_column(String(64))
    root: Mapped[str] = mapped_column(Text)
    manifest: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class BatchFileRow(Base):
    """One file of a batch, done or failed; a file is skipped on re-run when its
    sha256 matches a done row (migration 0004)."""

    __tablename__ = "batch_files"

    batch_id: Mapped[str] = mapped_column(String(128), ForeignKey("batches.id", ondelete="CASCADE"), primary_key=True)
    path: Mapped[str] = mapped_column(String(512), primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(8))
    error: Mapped[str | None] = mapped_column(Text)
    observations: Mapped[int] = mapped_column(Integer, default=0)
    stats: Mapped[dict] = mapped_column(JSON, default=dict)
    finished_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ObservationRow(Base):
    """One physical issue seen in footage (migration 0004); see ``city.observations``."""

    __tablename__ = "observations"

    id: Mapped[str] = mapped_column(String(160), primary_key=True)
    batch_id: Mapped[str] = mapped_column(String(128), ForeignKey("batches.id", ondelete="CASCADE"))
    file: Mapped[str] = mapped_column(String(512))
    file_sha256: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(8))
    platform_id: Mapped[str | None] = mapped_column(String(64))
    class_name: Mapped[str] = mapped_column(String(64))
    label_zh: Mapped[str] = mapped_column(String(64), default="")
    kind: Mapped[str | None] = mapped_column(String(4))
    code: Mapped[str | None] = mapped_column(String(5))
    confidence: Mapped[float] = mapped_column(Float)
    mean_confidence: Mapped[float] = mapped_column(Float)
    lat: Mapped[float] = mapped_column(Float)
    lon: Mapped[float] = mapped_column(Float)
    cell: Mapped[int] = mapped_column(BigInteger)
    error_m: Mapped[float] = mapped_column(Float)
    frames: Mapped[int] = mapped_column(Integer)
    first_t: Mapped[float] = mapped_column(Float)
    last_t: Mapped[float] = mapped_column(Float)
    best_t: Mapped[float] = mapped_column(Float)
    seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    box: Mapped[list] = mapped_column(JSON)
    frame_uri: Mapped[str | None] = mapped_column(Text)
    crop_uri: Mapped[str | None] = mapped_column(Text)
    model: Mapped[str] = mapped_column(String(64))
    case_number: Mapped[str | None] = mapped_column(String(32))

    __table_args__ = (
        Index("ix_observations_batch_file", "batch_id", "file"),
        Index("ix_observations_cell_code", "cell", "code"),
    )


class ViewRow(Base):
    """One sampled (and detected) frame of a batch file: where the camera was and
    how it pointed, so a later check can tell whether a place was in view
    (migration 0005). The file's camera and mount are in ``batch_files.stats["view"]``."""

    __tablename__ = "views"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    batch_id: Mapped[str] = mapped_column(String(128), ForeignKey("batches.id", ondelete="CASCADE"))
    file: Mapped[str] = mapped_column(String(512))
    t: Mapped[float] = mapped_column(Float)
    utc: Mapped[datetime | None] = mapped_column(UTCDateTime)
    lat: Mapped[float] = mapped_column(Float)
    lon: Mapped[float] = mapped_column(Float)
    cell: Mapped[int] = mapped_column(BigInteger)
    heading: Mapped[float | None] = mapped_column(Float)
    yaw: Mapped[float | None] = mapped_column(Float)
    alt: Mapped[float | None] = mapped_column(Float)
    pitch: Mapped[float | None] = mapped_column(Float)

    __table_args__ = (
        Index("ix_views_batch_file", "batch_id", "file"),
        Index("ix_views_cell", "cell"),
    )


class VerificationRow(Base):
    """One 核查 decision: a batch's footage checked at a case's place (migration 0005).
    At most one per (case, batch), so verifying a batch again changes nothing."""

    __tablename__ = "verifications"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("cases.id", ondelete="CASCADE"))
    batch_id: Mapped[str] = mapped_column(String(128), ForeignKey("batches.id", ondelete="CASCADE"))
    outcome: Mapped[str] = mapped_column(String(16))
    confidence: Mapped[float] = mapped_column(Float)
    frames: Mapped[int] = mapped_column(Integer)
    coverage: Mapped[float] = mapped_column(Float)
    observations: Mapped[list] = mapped_column(JSON, default=list)
    evidence: Mapped[list] = mapped_column(JSON, default=list)
    note: Mapped[str] = mapped_column(Text, default="")
    status_before: Mapped[str] = mapped_column(String(8))
    status_after: Mapped[str] = mapped_column(String(8))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(String(64))

    __table_args__ = (
        Index("ux_verifications_case_batch", "case_id", "batch_id", unique=True),
        Index("ix_verifications_batch", "batch_id"),
    )


class NotificationRow(Base):
    """A warning or escalation sent about a case (即将超期, 已超期, 督办…) (migration 0005).
    ``key`` makes sending idempotent: the scheduler sends each (case, rule, deadline) once."""

    __tablename__ = "notifications"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(160), unique=True)
    case_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    rule: Mapped[str] = mapped_column(String(32))
    level: Mapped[int] = mapped_column(Integer)
    recipient: Mapped[str] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(Text)
    deadline: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    acknowledged_by: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (Index("ix_notifications_recipient_created", "recipient", "created_at"),)


class UserRow(Base):
    """A person who signs in to the API or web app (migration 0006). The password
    is stored as an scrypt hash (:mod:`city.store.accounts`)."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    department_id: Mapped[str | None] = mapped_column(String(32))
    password_hash: Mapped[str] = mapped_column(String(256))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class TokenRow(Base):
    """A bearer token: a signed-in session of a user, or an Open311 client's API key
    (migration 0006). Only the token's SHA-256 is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16))  # session | api_key
    user_name: Mapped[str | None] = mapped_column(String(64), index=True)
    label: Mapped[str] = mapped_column(String(128), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class JobRow(Base):
    """Background work of the server (an uploaded batch to ingest and run through the
    pipeline…), claimed by a worker; progress and result are JSON (migration 0006)."""

    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))  # queued | running | done | failed
    owner: Mapped[str] = mapped_column(String(64))
    params: Mapped[dict] = mapped_column(JSON, default=dict)
    progress: Mapped[dict] = mapped_column(JSON, default=dict)
    result: Mapped[dict | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_jobs_status_created", "status", "created_at"),)


class Open311RequestRow(Base):
    """A service request POSTed by an Open311 client (migration 0006): kept as received,
    then processed by the case pipeline; ``token`` answers GET tokens/{token}.json."""

    __tablename__ = "open311_requests"

    token: Mapped[str] = mapped_column(String(64), primary_key=True)
    client: Mapped[str] = mapped_column(String(128))
    payload: Mapped[dict] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))  # received | processed | failed
    case_number: Mapped[str | None] = mapped_column(String(32), index=True)
    note: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
