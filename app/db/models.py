"""SQLAlchemy tables: users and their tokens and credits, images and their owners, request history.

Schema changes go through Alembic (`app/db/migrations`); these classes describe the head.
Times are timezone-aware UTC `DateTime`s; names follow one convention (`ix_`, `uq_`, `fk_`,
`ck_`) so that migrations can name every constraint.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every back-end (SQLite keeps no offset: UTC is implied)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class User(Base):
    """An account: a user, or an admin (`is_admin`)."""

    __tablename__ = "users"
    # AUTOINCREMENT: SQLite must never reuse a deleted user's id (old tokens name it)
    __table_args__ = (
        CheckConstraint("credits >= 0", name="credits_not_negative"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(150))
    # Case-insensitive uniqueness: the NFKC case-folded username.
    username_key: Mapped[str] = mapped_column(String(150), unique=True)
    full_name: Mapped[str | None] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(255))
    # The ADMIN_PW_HASH this account was created from (seed 000), to notice when it changes.
    external_hash: Mapped[str | None] = mapped_column(String(255))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    credits: Mapped[int] = mapped_column(BigInteger, default=0)
    # Tokens issued before this instant are refused (logout everywhere, erasure).
    tokens_valid_after: Mapped[datetime | None] = mapped_column(UtcDateTime())
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class RefreshToken(Base):
    """One issued refresh token; a rotation marks it used and issues the next of its family."""

    __tablename__ = "refresh_tokens"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    family_id: Mapped[str] = mapped_column(String(64), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    issued_at: Mapped[datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)


class RevokedAccessToken(Base):
    """An access token revoked before its expiry (logout)."""

    __tablename__ = "revoked_access_tokens"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)


class CreditEntry(Base):
    """One change of a user's balance; the balance is always the sum of its entries."""

    __tablename__ = "credit_ledger"
    __table_args__ = (Index("uq_credit_ledger_subject", "user_id", "subject_key", unique=True),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    delta: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(String(128))
    detail: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    # What a charge paid for (an analysis cache key, a job key): charged at most once per user
    # (unique with user_id; NULL, as for refills, is never a duplicate).
    subject_key: Mapped[str | None] = mapped_column(String(255))


class CreditHold(Base):
    """A credit set aside for an analysis in progress: charged on success, dropped otherwise.

    A hold is a lease: it counts until `expires_at`, which running work renews; the hold of a
    process that died (kill -9, any host) is never charged and stops counting when it expires.
    `holder` names the process for diagnosis only.
    """

    __tablename__ = "credit_holds"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    holder: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())


PERCEPTUAL_BANDS = 16  # 16-bit bands of the 256-bit PDQ hash (app.services.images.perceptual)


def _band_index(band: int) -> Index:
    """Exact-match index of one band and the owner (a lookup in the owner's images reads only
    theirs), over the rows that have a hash (migration 0009)."""
    column = f"pdq_{band}"
    where = text(f"{column} IS NOT NULL")
    return Index(f"ix_images_pdq_{band}", column, "owner", sqlite_where=where, postgresql_where=where)


class Image(Base):
    """A stored image's metadata and its owner (the bytes are in the image store)."""

    __tablename__ = "images"
    __table_args__ = (
        Index("ix_images_owner_created", "owner", "created_ts"),
        *(_band_index(band) for band in range(PERCEPTUAL_BANDS)),
    )

    image_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64))
    filename: Mapped[str | None] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(64))
    format: Mapped[str] = mapped_column(String(16))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[str] = mapped_column(String(32))
    # Unix time of created_at, for ordering and pagination.
    created_ts: Mapped[float] = mapped_column(Float)
    # Displayed size (EXIF orientation applied; NULL in rows from before 0004: the stored size)
    upright_width: Mapped[int | None] = mapped_column(Integer)
    upright_height: Mapped[int | None] = mapped_column(Integer)
    # A declared trailer cut off at upload (RemovedTrailer as JSON), or NULL
    trailer: Mapped[str | None] = mapped_column(Text)
    # PDQ hash (64 hex digits; NULL: not computed, or the image is too flat to say) and its
    # bands, each indexed: a near-duplicate lookup probes the bands, then checks the distance
    perceptual_hash: Mapped[str | None] = mapped_column(String(64))
    pdq_0: Mapped[int | None] = mapped_column(Integer)
    pdq_1: Mapped[int | None] = mapped_column(Integer)
    pdq_2: Mapped[int | None] = mapped_column(Integer)
    pdq_3: Mapped[int | None] = mapped_column(Integer)
    pdq_4: Mapped[int | None] = mapped_column(Integer)
    pdq_5: Mapped[int | None] = mapped_column(Integer)
    pdq_6: Mapped[int | None] = mapped_column(Integer)
    pdq_7: Mapped[int | None] = mapped_column(Integer)
    pdq_8: Mapped[int | None] = mapped_column(Integer)
    pdq_9: Mapped[int | None] = mapped_column(Integer)
    pdq_10: Mapped[int | None] = mapped_column(Integer)
    pdq_11: Mapped[int | None] = mapped_column(Integer)
    pdq_12: Mapped[int | None] = mapped_column(Integer)
    pdq_13: Mapped[int | None] = mapped_column(Integer)
    pdq_14: Mapped[int | None] = mapped_column(Integer)
    pdq_15: Mapped[int | None] = mapped_column(Integer)


class RequestLog(Base):
    """One analysis request (seed 003's history), kept when its user is erased (unlinked)."""

    __tablename__ = "request_history"
    __table_args__ = (
        Index("ix_request_history_created_at", "created_at"),
        # Covers /stats' quantile walks, also under a filter (type, status, time range).
        Index("ix_request_history_stats", "processing_time", "request_type", "status_code", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    request_type: Mapped[str] = mapped_column(String(16))
    route: Mapped[str] = mapped_column(String(128))
    principal: Mapped[str | None] = mapped_column(String(64), index=True)
    processing_time: Mapped[float] = mapped_column(Float)
    input_data_size: Mapped[int | None] = mapped_column(BigInteger)
    image_width: Mapped[int | None] = mapped_column(Integer)
    image_height: Mapped[int | None] = mapped_column(Integer)
    status_code: Mapped[int] = mapped_column(Integer)
    result: Mapped[str | None] = mapped_column(Text)
    error_message: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class IdempotencyKey(Base):
    """An `Idempotency-Key` of one caller: claimed while its request runs (a lease, renewed
    while it runs, so that the claim of a crashed process expires), then what it created.

    `key_hash` is sha256(scope + key); `scope_hash` is sha256(scope) (the caller's principal),
    for erasure. A claim is `claim_token` + `claimed_until`; a finished request leaves
    `image_id` + `fingerprint` (the upload's SHA-256), replayed until `expires_at`.
    """

    __tablename__ = "idempotency_keys"

    key_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    scope_hash: Mapped[str] = mapped_column(String(64), index=True)
    claim_token: Mapped[str | None] = mapped_column(String(32))
    claimed_until: Mapped[datetime | None] = mapped_column(UtcDateTime())
    fingerprint: Mapped[str | None] = mapped_column(String(64))
    image_id: Mapped[str | None] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)


class AppSecret(Base):
    """A secret every replica on this database shares (the generated JWT key), set once."""

    __tablename__ = "app_secrets"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class ContourJobRecord(Base):
    """A seed 004 contour job in scale-out mode (`app.services.jobs.pg_queue`): every replica reads it."""

    __tablename__ = "contour_jobs"
    __table_args__ = (
        Index("ix_contour_jobs_content_key_status", "content_key", "status"),
        Index("ix_contour_jobs_owner", "owner"),
        Index("ix_contour_jobs_status_updated_at", "status", "updated_at"),
    )

    job_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    content_key: Mapped[str] = mapped_column(String(64))
    owner: Mapped[str] = mapped_column(String(255))
    hold_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    error_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    error_detail: Mapped[str | None] = mapped_column(Text, nullable=True)
    worker: Mapped[str | None] = mapped_column(String(255), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())
    # Born completed from a near-duplicate job's result: that job and the PDQ distance
    reused_from: Mapped[str | None] = mapped_column(String(36), nullable=True)
    reused_distance: Mapped[int | None] = mapped_column(Integer, nullable=True)


class ContourJobHash(Base):
    """The PDQ hash of a detection contour job's image, per content and owner: a near-duplicate
    submit of that owner may reuse its result (`app.services.jobs.reuse`); every band indexed."""

    __tablename__ = "contour_job_hashes"
    __table_args__ = (
        Index("ix_contour_job_hashes_owner", "owner"),
        *(
            Index(f"ix_contour_job_hashes_pdq_{band}", f"pdq_{band}", "owner")
            for band in range(PERCEPTUAL_BANDS)
        ),
    )

    content_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner: Mapped[str] = mapped_column(String(255), primary_key=True)
    job_id: Mapped[str] = mapped_column(String(36))  # the owner's first job of this content
    variant: Mapped[str] = mapped_column(String(128))  # the detector's version
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    perceptual_hash: Mapped[str] = mapped_column(String(64))
    created_ts: Mapped[float] = mapped_column(Float)
    pdq_0: Mapped[int] = mapped_column(Integer)
    pdq_1: Mapped[int] = mapped_column(Integer)
    pdq_2: Mapped[int] = mapped_column(Integer)
    pdq_3: Mapped[int] = mapped_column(Integer)
    pdq_4: Mapped[int] = mapped_column(Integer)
    pdq_5: Mapped[int] = mapped_column(Integer)
    pdq_6: Mapped[int] = mapped_column(Integer)
    pdq_7: Mapped[int] = mapped_column(Integer)
    pdq_8: Mapped[int] = mapped_column(Integer)
    pdq_9: Mapped[int] = mapped_column(Integer)
    pdq_10: Mapped[int] = mapped_column(Integer)
    pdq_11: Mapped[int] = mapped_column(Integer)
    pdq_12: Mapped[int] = mapped_column(Integer)
    pdq_13: Mapped[int] = mapped_column(Integer)
    pdq_14: Mapped[int] = mapped_column(Integer)
    pdq_15: Mapped[int] = mapped_column(Integer)


class WebhookSecret(Base):
    """A principal's webhook signing secret (`whsec_...`) and, for a while after a rotation,
    the previous one (deliveries carry both signatures until `previous_until`)."""

    __tablename__ = "webhook_secrets"

    principal: Mapped[str] = mapped_column(String(255), primary_key=True)
    secret: Mapped[str] = mapped_column(String(128))
    previous: Mapped[str | None] = mapped_column(String(128), nullable=True)
    previous_until: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class WebhookDelivery(Base):
    """One event for one callback URL (`app.services.webhooks`): `awaiting` its event (the job
    is not finished), `pending` (tried at `next_attempt_at`; a claim pushes that forward by a
    lease), `delivered` or `failed` (given up). `id` is the stable `webhook-id`."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_status_next", "status", "next_attempt_at"),
        Index("ix_webhook_deliveries_principal_created", "principal", "created_at"),
        Index("ix_webhook_deliveries_subject", "subject"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    principal: Mapped[str] = mapped_column(String(255))
    subject: Mapped[str] = mapped_column(String(64))  # e.g. the job id
    url: Mapped[str] = mapped_column(Text)
    event_type: Mapped[str | None] = mapped_column(String(64), nullable=True)
    payload: Mapped[str | None] = mapped_column(Text, nullable=True)  # the exact body sent
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    claim: Mapped[str | None] = mapped_column(String(32), nullable=True)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    last_status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str | None] = mapped_column(String(255), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    fired_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
