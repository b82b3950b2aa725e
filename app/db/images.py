"""The image catalog: each stored image's metadata and owner (keyword-only repository functions)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Select, and_, bindparam, delete, func, insert, or_, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.sql.elements import ColumnElement

from app.core.units import human_size
from app.db.engine import is_sqlite, rowcount
from app.db.group_commit import GroupCommit
from app.db.models import PERCEPTUAL_BANDS, Image
from app.db.sqlite_writer import SqliteBatchWriter
from app.storage.metadata import ImageMetadata

# Built once: a hit's check should not pay for building the statement again.
_OWNER = select(Image.owner).where(Image.image_id == bindparam("image_id"))
# Every field but `size`, which is derived from `size_bytes`.
_FIELDS = tuple(name for name in ImageMetadata.model_fields if name != "size")


_NO_BANDS: dict[str, int | None] = {f"pdq_{band}": None for band in range(PERCEPTUAL_BANDS)}


def band_columns(perceptual_hash: str | None) -> dict[str, int | None]:
    """The band columns of a hash (all NULL without one)."""
    if not perceptual_hash:
        return dict(_NO_BANDS)  # most uploads: not hashed (built once, ~6 µs a row otherwise)
    step = len(perceptual_hash) // PERCEPTUAL_BANDS
    bands = (perceptual_hash[band * step : (band + 1) * step] for band in range(PERCEPTUAL_BANDS))
    return {f"pdq_{band}": int(value, 16) for band, value in enumerate(bands)}


def _row(meta: ImageMetadata, owner: str) -> dict[str, object]:
    """The catalog row of `meta` (its fields read directly: `model_dump` costs ~4 µs more a row)."""
    created = datetime.fromisoformat(meta.created_at)  # "…Z": UTC (fromisoformat is C, strptime is not)
    values: dict[str, object] = {name: getattr(meta, name) for name in _FIELDS}
    values.update(band_columns(meta.perceptual_hash))
    values["trailer"] = None if meta.trailer is None else meta.trailer.model_dump_json()  # a JSON text column
    values["owner"] = owner
    values["created_ts"] = created.timestamp()
    return values


def to_metadata(row: Image) -> ImageMetadata:
    values = {name: getattr(row, name) for name in _FIELDS}
    trailer = None if row.trailer is None else json.loads(row.trailer)
    return ImageMetadata.model_validate({**values, "trailer": trailer, "size": human_size(row.size_bytes)})


class RowWriter(NamedTuple):
    """How the catalog commits one image row: `commit` (event loop), `commit_now` (from a worker
    thread, blocking; None where the database has no such path), `close`."""

    commit: Callable[[ImageMetadata, str], Awaitable[None]]
    commit_now: Callable[[ImageMetadata, str], None] | None
    close: Callable[[], None]


def row_writer(url: str, sessions: async_sessionmaker[AsyncSession]) -> RowWriter:
    """The catalog's row writer: on SQLite a writer thread that batches concurrent rows in one
    transaction (`commit`) or the worker thread's own transaction on its connection
    (`commit_now`); elsewhere group commit through the async session."""
    if is_sqlite(url):
        columns = list(Image.__table__.columns.keys())
        sql = f"INSERT INTO images ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
        writer = SqliteBatchWriter(str(make_url(url).database), sql)

        async def commit_sqlite(meta: ImageMetadata, owner: str) -> None:
            row = _row(meta, owner)
            await writer.commit([row[name] for name in columns])

        def commit_now(meta: ImageMetadata, owner: str) -> None:
            row = _row(meta, owner)
            writer.insert_now([row[name] for name in columns])

        return RowWriter(commit_sqlite, commit_now, writer.close)
    group: GroupCommit[tuple[ImageMetadata, str]] = GroupCommit(
        sessions, lambda session, rows: add_images(session, images=rows)
    )

    async def commit_group(meta: ImageMetadata, owner: str) -> None:
        await group.commit((meta, owner))

    return RowWriter(commit_group, None, lambda: None)


async def add_images(session: AsyncSession, *, images: Sequence[tuple[ImageMetadata, str]]) -> None:
    """Insert (metadata, owner) rows in one statement."""
    if images:
        await session.execute(insert(Image), [_row(meta, owner) for meta, owner in images])


async def get_image(session: AsyncSession, *, image_id: str) -> Image | None:
    return await session.get(Image, image_id)


async def owner_of(reads: AsyncEngine, *, image_id: str) -> str | None:
    """The owner of an image in the catalog, or None: one indexed read of one column. `reads`
    is best an AUTOCOMMIT view of the engine (`autocommit`): no BEGIN and ROLLBACK round
    trips around the read."""
    async with reads.connect() as connection:
        owner = (await connection.execute(_OWNER, {"image_id": image_id})).scalar()
    return None if owner is None else str(owner)


def autocommit(sessions: async_sessionmaker[AsyncSession]) -> AsyncEngine:
    """The sessions' engine (same pool) with single statements outside a transaction."""
    engine: AsyncEngine = sessions.kw["bind"]
    return engine.execution_options(isolation_level="AUTOCOMMIT")


async def delete_image(session: AsyncSession, *, image_id: str) -> bool:
    result = await session.execute(delete(Image).where(Image.image_id == image_id))
    return rowcount(result) == 1


async def list_images(
    session: AsyncSession, *, owner: str | None, limit: int, offset: int
) -> tuple[int, list[Image]]:
    """(total, page) of an owner's images (every image when `owner` is None), newest first."""
    where = [] if owner is None else [Image.owner == owner]
    total = (await session.execute(select(func.count()).select_from(Image).where(*where))).scalar_one()
    rows = await session.execute(
        select(Image)
        .where(*where)
        .order_by(Image.created_ts.desc(), Image.image_id)
        .limit(limit)
        .offset(offset)
    )
    return int(total), list(rows.scalars())


async def delete_owned(session: AsyncSession, *, owner: str) -> list[tuple[str, str]]:
    """Delete every image row of `owner` in one statement; (image_id, format) of each row deleted
    (exactly those: a row committed concurrently is either deleted and returned, or kept)."""
    statement = delete(Image).where(Image.owner == owner).returning(Image.image_id, Image.format)
    return [(str(image_id), str(fmt)) for image_id, fmt in await session.execute(statement)]


async def known_ids(session: AsyncSession, *, image_ids: Sequence[str]) -> set[str]:
    """Which of `image_ids` are in the catalog."""
    found: set[str] = set()
    for start in range(0, len(image_ids), 500):
        chunk = image_ids[start : start + 500]
        rows = await session.execute(select(Image.image_id).where(Image.image_id.in_(chunk)))
        found.update(rows.scalars())
    return found


async def set_perceptual_hash(session: AsyncSession, *, image_id: str, perceptual_hash: str) -> None:
    """Store the hash of an image whose row has none yet (computed after its upload)."""
    await session.execute(
        update(Image)
        .where(Image.image_id == image_id, Image.perceptual_hash.is_(None))
        .values(perceptual_hash=perceptual_hash, **band_columns(perceptual_hash))
    )


class NearDuplicate(NamedTuple):
    """What a near-duplicate lookup needs of a candidate row."""

    image_id: str
    perceptual_hash: str | None
    width: int
    height: int
    upright_width: int | None
    upright_height: int | None
    created_ts: float


_CANDIDATE = tuple(getattr(Image, name) for name in NearDuplicate._fields)


def band_match(table: Any, probes: Sequence[Sequence[int]], owner: str | None = None) -> ColumnElement[bool]:
    """Rows of `table` (its `pdq_0`... columns, each indexed with the owner after it) with at
    least one band among its probed values (`probes[band]`: the values to look up in that
    band's index), of `owner` if given: the owner is part of every branch, so that each
    branch is one probe of one (band, owner) index and another owner's rows are never read."""
    columns = [getattr(table, f"pdq_{band}") for band in range(PERCEPTUAL_BANDS)]
    branches = []
    for column, values in zip(columns, probes, strict=True):
        match = column.in_(values) if len(values) > 1 else column == values[0]
        branches.append(match if owner is None else and_(match, table.owner == owner))
    return or_(*branches)


def near_duplicates_query(
    *, probes: Sequence[Sequence[int]], owner: str | None, exclude: str
) -> Select[tuple[Any, ...]]:
    """The lookup `near_duplicates` runs (also what `bench/perceptual_lookup.py` EXPLAINs)."""
    return select(*_CANDIDATE).where(band_match(Image, probes, owner), Image.image_id != exclude)


async def near_duplicates(
    session: AsyncSession, *, probes: Sequence[Sequence[int]], owner: str | None, exclude: str
) -> list[NearDuplicate]:
    """Rows with at least one band among its probed values (`probes[band]`: the values to look
    up in that band's index), of `owner` (any owner when None), other than `exclude`; the
    caller checks the full Hamming distance of these candidates."""
    rows = await session.execute(near_duplicates_query(probes=probes, owner=owner, exclude=exclude))
    return [NearDuplicate(*row) for row in rows]
