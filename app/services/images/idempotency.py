"""Idempotency-Key records (IETF draft `draft-ietf-httpapi-idempotency-key-header`), in the database.

A key is claimed when its request arrives, before the body is read, with one
`INSERT ... ON CONFLICT DO NOTHING` (or a conditional UPDATE of a finished or abandoned key):
a second request with the same key while the first is in flight gets 409, on any replica
sharing the database. A claim is a lease (`lease_seconds`, renewed while its request runs),
not a pid: the claim of a process that crashed expires by itself.

What the first request created (the image id) is written with the fingerprint of the
request (the SHA-256 of the uploaded file) in the transaction that creates the image row
(`record`), so a retry with the same key and the same file gets the same image, also after
a crash or on another replica; the same key with another file is 422. Records expire after
`ttl` seconds and are purged.

Keys are scoped by the caller's principal (`scope_hash` = sha256(principal)), so that erasing
an account deletes its keys. Records kept as files by earlier versions
(`DATA_DIR/idempotency/{scope hash}/{key hash}.json`, or flat `{key hash}.json`) are imported
at start-up, once, then their files removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.errors import BadRequest, IdempotencyConflict
from app.core.tasks import cancel_and_wait
from app.db import idempotency as keys
from app.storage.atomic import unlink_quietly

logger = logging.getLogger("app.upload")

MAX_KEY_LENGTH = 255
PURGE_EVERY_CLAIMS = 1000


@dataclass(frozen=True)
class IdempotencyRecord:
    """What a key's first request created, kept for replay."""

    fingerprint: str
    image_id: str
    created_at: float


@dataclass(frozen=True)
class Claim:
    """A key claimed by one request (ours while `token` is in its row)."""

    key_hash: str
    scope_hash: str
    token: str


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class IdempotencyStore:
    """Idempotency keys as rows of `idempotency_keys`; `legacy_root` holds files to import."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        ttl_seconds: int,
        lease_seconds: float = 60.0,
        legacy_root: Path | None = None,
    ) -> None:
        self.sessions = sessions
        self.ttl = ttl_seconds
        self.lease = lease_seconds
        self.legacy_root = legacy_root
        self._renewals: dict[str, asyncio.Task[None]] = {}
        self._claims = 0

    @staticmethod
    def validate(key: str) -> None:
        """BadRequest unless `key` is 1-255 printable ASCII characters."""
        if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable() or not key.isascii():
            raise BadRequest(f"Idempotency-Key must be 1-{MAX_KEY_LENGTH} printable ASCII characters")

    async def claim(self, key: str, scope: str) -> Claim:
        """Claim `key` of `scope` (the caller's principal); IdempotencyConflict if it is in flight."""
        self.validate(key)
        claim = Claim(_hash(f"{scope}\n{key}"), _hash(scope), uuid.uuid4().hex)
        now = datetime.now(UTC)
        async with self.sessions.begin() as session:
            taken = await keys.claim(
                session,
                key_hash=claim.key_hash,
                scope_hash=claim.scope_hash,
                token=claim.token,
                now=now,
                until=now + timedelta(seconds=self.lease),
            )
        if not taken:
            raise IdempotencyConflict()
        self._renewals[claim.token] = asyncio.create_task(self._renew(claim), name="idempotency-lease")
        self._claims += 1
        if self._claims % PURGE_EVERY_CLAIMS == 0:
            await self.purge()
        return claim

    async def _renew(self, claim: Claim) -> None:
        """Keep a claim's lease alive while its request runs."""
        while True:
            await asyncio.sleep(self.lease / 3)
            try:
                async with self.sessions.begin() as session:
                    await keys.renew(
                        session,
                        key_hash=claim.key_hash,
                        token=claim.token,
                        until=datetime.now(UTC) + timedelta(seconds=self.lease),
                    )
            except Exception as exc:  # the database is away: `record` will notice a lost claim
                logger.warning("could not renew an Idempotency-Key lease (%s)", type(exc).__name__)

    async def release(self, claim: Claim) -> None:
        """End a claim (whatever the outcome of its request; an unrecorded key goes)."""
        try:
            await cancel_and_wait(self._renewals.pop(claim.token, None))
        finally:  # also when the caller is cancelled meanwhile: a retry must not wait for the lease
            try:
                async with self.sessions.begin() as session:
                    await keys.release(session, key_hash=claim.key_hash, token=claim.token)
            except Exception as exc:  # its lease expires anyway
                logger.warning("could not release an Idempotency-Key claim (%s)", type(exc).__name__)

    async def load(self, claim: Claim) -> IdempotencyRecord | None:
        """The unexpired record of a claimed key, if its first request finished."""
        async with self.sessions() as session:
            row = await keys.load(session, key_hash=claim.key_hash, now=datetime.now(UTC))
        if row is None or row.image_id is None or row.fingerprint is None:
            return None
        return IdempotencyRecord(row.fingerprint, row.image_id, row.created_at.timestamp())

    async def record(self, session: AsyncSession, claim: Claim, fingerprint: str, image_id: str) -> None:
        """Store what a claimed key created, in the caller's transaction (the one that creates
        the image); IdempotencyConflict (rolling it back) if the claim was lost meanwhile."""
        now = datetime.now(UTC)
        ours = await keys.record(
            session,
            key_hash=claim.key_hash,
            token=claim.token,
            fingerprint=fingerprint,
            image_id=image_id,
            now=now,
            expires_at=now + timedelta(seconds=self.ttl),
        )
        if not ours:
            raise IdempotencyConflict()

    async def close(self) -> None:
        """Stop renewing leases (shutdown): unfinished claims expire by themselves."""
        tasks = list(self._renewals.values())
        self._renewals.clear()
        await cancel_and_wait(*tasks)

    async def erase_scope(self, scope: str, image_ids: Collection[str] = ()) -> int:
        """Delete every key (and claim) of `scope`, and any naming one of `image_ids`; how many."""
        async with self.sessions.begin() as session:
            return await keys.erase(session, scope_hash=_hash(scope), image_ids=list(image_ids))

    async def purge(self) -> int:
        """Delete expired, unclaimed keys; how many."""
        async with self.sessions.begin() as session:
            return await keys.purge_expired(session, now=datetime.now(UTC))

    async def recover(self) -> None:
        """Start-up: import the record files of earlier versions (then remove them), purge."""
        if self.legacy_root is not None and self.legacy_root.is_dir():
            rows, files = self._read_legacy(self.legacy_root)
            if rows:
                async with self.sessions.begin() as session:
                    await keys.import_records(session, rows=rows)
                logger.info("imported %d Idempotency-Key record file(s) into the database", len(rows))
            for path in files:
                unlink_quietly(path)
            for entry in os.scandir(self.legacy_root):
                if entry.is_dir(follow_symlinks=False):
                    with contextlib.suppress(OSError):
                        os.rmdir(entry.path)  # only if empty (a lock of an older process stays)
        await self.purge()

    def _read_legacy(self, root: Path) -> tuple[list[dict[str, Any]], list[Path]]:
        """(rows to import, files to remove) from an earlier version's record files."""
        now = datetime.now(UTC)
        rows: list[dict[str, Any]] = []
        files: list[Path] = []
        for path in [*root.glob("*.json"), *root.glob("*/*.json")]:
            files.append(path)
            scope_hash = path.parent.name if path.parent != root else ""
            try:
                raw = json.loads(path.read_bytes())
                image_id = raw["image_id"] if "image_id" in raw else json.loads(raw["body"])["image_id"]
                created = datetime.fromtimestamp(float(raw["created_at"]), UTC)
                row = {
                    "key_hash": path.stem,
                    "scope_hash": scope_hash,
                    "claim_token": None,
                    "claimed_until": None,
                    "fingerprint": str(raw["fingerprint"]),
                    "image_id": str(image_id),
                    "created_at": created,
                    "expires_at": created + timedelta(seconds=self.ttl),
                }
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                continue
            if created + timedelta(seconds=self.ttl) > now and len(path.stem) == 64:
                rows.append(row)
        return rows, files
