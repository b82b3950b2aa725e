"""Idempotency-Key records (IETF draft `draft-ietf-httpapi-idempotency-key-header`).

A key is claimed when its request arrives, before the body is read: a second request
with the same key while the first is in flight gets 409. What the first request created
(the image id) is stored on disk with the fingerprint of the request (the SHA-256 of the
uploaded file), so a retry with the same key and the same file gets the same image, also
after a restart; the same key with another file is 422. Records expire after `ttl` seconds.

Claims are held twice: in a set (fast, this process) and as an `O_EXCL` lock file
holding our pid (other worker processes); stale lock files of dead processes are swept
at start-up.

Layout: one folder per scope (the caller's principal), `{sha256(scope)}/{record}.json|.lock`,
so that erasing an account removes its records in one folder, whatever the others hold.
Records of an earlier version (`{record}.json` in the root) are still read until they expire.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from app.core.errors import BadRequest, IdempotencyConflict
from app.storage.atomic import atomic_write, is_live_peer, sweep_temp_files, unlink_quietly

MAX_KEY_LENGTH = 255


@dataclass(frozen=True)
class IdempotencyRecord:
    """What a key's first request created, kept for replay."""

    fingerprint: str
    image_id: str
    created_at: float


class IdempotencyStore:
    """Idempotency records as JSON files under `root`."""

    def __init__(self, root: Path, ttl_seconds: int) -> None:
        self.root = root
        self.ttl = ttl_seconds
        self._in_flight: set[str] = set()
        self._legacy_records = False  # records of the flat layout seen at start-up
        root.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def scope_folder(scope: str) -> str:
        """The folder name of a scope's records."""
        return hashlib.sha256(scope.encode()).hexdigest()

    @classmethod
    def record_id(cls, key: str, scope: str) -> str:
        """The file-safe id of a key within a scope (the caller's principal): `{scope folder}/{hash}`."""
        if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable() or not key.isascii():
            raise BadRequest(
                f"Idempotency-Key must be 1-{MAX_KEY_LENGTH} printable ASCII characters",
            )
        digest = hashlib.sha256(f"{scope}\n{key}".encode()).hexdigest()
        return f"{cls.scope_folder(scope)}/{digest}"

    def claim(self, record_id: str) -> None:
        """Mark a key in flight; IdempotencyConflict if it already is."""
        if record_id in self._in_flight:
            raise IdempotencyConflict()
        fd = self._create_lock(self.root / f"{record_id}.lock")
        try:
            os.write(fd, str(os.getpid()).encode())
        finally:
            os.close(fd)
        self._in_flight.add(record_id)

    @staticmethod
    def _create_lock(lock: Path) -> int:
        """Create a claim's lock file (and its scope folder); IdempotencyConflict if it exists."""
        attempts = 3
        while True:
            lock.parent.mkdir(exist_ok=True)
            try:
                return os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                raise IdempotencyConflict() from None
            except FileNotFoundError:  # the folder was removed in between (erasure, recovery)
                attempts -= 1
                if not attempts:
                    raise

    def release(self, record_id: str) -> None:
        """End a claim (whatever the outcome of its request)."""
        self._in_flight.discard(record_id)
        unlink_quietly(self.root / f"{record_id}.lock")

    def load(self, record_id: str) -> IdempotencyRecord | None:
        """The record of a key, unless absent, unreadable or expired."""
        try:
            raw = json.loads(self._record_bytes(record_id))
            # Records written before image ids were stored kept the whole response body.
            image_id = raw["image_id"] if "image_id" in raw else json.loads(raw["body"])["image_id"]
            record = IdempotencyRecord(
                fingerprint=str(raw["fingerprint"]),
                image_id=str(image_id),
                created_at=float(raw["created_at"]),
            )
        except (FileNotFoundError, ValueError, KeyError, TypeError, AttributeError):
            return None
        if time.time() - record.created_at > self.ttl:
            return None
        return record

    def _record_bytes(self, record_id: str) -> bytes:
        try:
            return (self.root / f"{record_id}.json").read_bytes()
        except FileNotFoundError:
            if "/" not in record_id:
                raise
        # Written by an earlier version: the same record id without its scope folder.
        return (self.root / f"{record_id.rpartition('/')[2]}.json").read_bytes()

    def save(self, record_id: str, record: IdempotencyRecord) -> None:
        """Store the record of a claimed key (fsynced, atomic; its folder exists: it is claimed)."""
        payload = {
            "fingerprint": record.fingerprint,
            "image_id": record.image_id,
            "created_at": record.created_at,
        }
        atomic_write(self.root / f"{record_id}.json", json.dumps(payload).encode(), self.root)

    def erase_scope(self, scope: str, image_ids: Collection[str] = ()) -> int:
        """Remove every record (and claim) of `scope`, and the records of an earlier version that
        name one of `image_ids` (account erasure); how many files."""
        removed = 0
        folder = self.root / self.scope_folder(scope)
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            for entry in os.scandir(folder):
                unlink_quietly(Path(entry.path))
                removed += 1
        with contextlib.suppress(OSError):
            os.rmdir(folder)
        if self._legacy_records and image_ids:
            wanted = set(image_ids)
            for entry in os.scandir(self.root):
                if entry.is_file() and entry.name.endswith(".json"):
                    record = self.load(entry.name.removesuffix(".json"))
                    if record is not None and record.image_id in wanted:
                        unlink_quietly(Path(entry.path))
                        removed += 1
        return removed

    def recover(self) -> None:
        """Start-up: drop temp files, locks of dead processes, expired records, empty folders."""
        sweep_temp_files(self.root)
        now = time.time()
        for entry in os.scandir(self.root):
            if entry.is_dir(follow_symlinks=False):
                with contextlib.suppress(OSError):
                    for inner in os.scandir(entry.path):
                        self._recover_file(inner, now)
                with contextlib.suppress(OSError):
                    os.rmdir(entry.path)  # only if empty
            elif self._recover_file(entry, now) and entry.name.endswith(".json"):
                self._legacy_records = True

    def _recover_file(self, entry: os.DirEntry[str], now: float) -> bool:
        """Apply start-up rules to one file; True if it is kept."""
        path = Path(entry.path)
        if entry.name.endswith(".lock"):
            with contextlib.suppress(OSError, ValueError):
                pid = int(path.read_text() or "0")
                if not is_live_peer(pid):
                    unlink_quietly(path)
                    return False
        elif entry.name.endswith(".json"):
            with contextlib.suppress(OSError):
                if now - entry.stat().st_mtime > self.ttl:
                    unlink_quietly(path)
                    return False
        return True
