"""The control plane's own state: tokens, settings, API keys, bundles, plans, gateway status.

Invariants:

- Every method runs in one transaction; a database failure surfaces as ``StoreError`` (one
  line, naming the database), which the API answers with 503.
- ``add_bundle`` numbers bundles under a write lock (an advisory lock on PostgreSQL, the
  write lock on SQLite), so two control planes publishing at once get versions n and n+1,
  never the same one.
- Tokens and keys are looked up by SHA-256 digest; a plaintext secret never reaches here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, insert, select, text, update
from sqlalchemy.engine import Connection, Engine, RowMapping
from sqlalchemy.exc import SQLAlchemyError

from isthmus.control import tables as t
from isthmus.control.timeutil import as_utc
from isthmus.store.engine import WRITE_OPTION, describe_failure
from isthmus.store.errors import StoreError
from isthmus.store.urls import display_url

__all__ = ["BundleRow", "ControlDB", "KeyRow"]

_BUNDLE_LOCK = 0x69737468_626E64  # advisory lock that serialises bundle numbering


def now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class KeyRow:
    tenant: str
    key_id: str
    sha256: str | None
    source: str
    created_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class BundleRow:
    version: int
    created_at: datetime
    content_sha256: str
    key_id: str
    catalog: str | None
    catalog_revision: int | None
    published_at: datetime | None
    signed: bytes


def _key(row: RowMapping) -> KeyRow:
    revoked = row["revoked_at"]
    return KeyRow(
        tenant=row["tenant"],
        key_id=row["key_id"],
        sha256=row["sha256"],
        source=row["source"],
        created_at=as_utc(row["created_at"]),
        revoked_at=None if revoked is None else as_utc(revoked),
    )


def _bundle(row: RowMapping) -> BundleRow:
    published = row["published_at"]
    return BundleRow(
        version=row["version"],
        created_at=as_utc(row["created_at"]),
        content_sha256=row["content_sha256"],
        key_id=row["key_id"],
        catalog=row["catalog"],
        catalog_revision=row["catalog_revision"],
        published_at=None if published is None else as_utc(published),
        signed=bytes(row["signed"]),
    )


class ControlDB:
    """The control tables on ``engine`` (created if missing)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._writer = engine.execution_options(**{WRITE_OPTION: True})
        with self._begin("creating the control tables", write=True) as connection:
            t.metadata.create_all(connection)

    @contextmanager
    def _begin(self, action: str, *, write: bool = False) -> Iterator[Connection]:
        try:
            with (self._writer if write else self.engine).begin() as connection:
                yield connection
        except StoreError:
            raise
        except SQLAlchemyError as exc:
            where = display_url(self.engine.url)
            raise StoreError(f"{action} in {where} failed: {describe_failure(exc)}") from None

    # tokens -------------------------------------------------------------------------------

    def set_tokens(self, role: str, digests: Iterable[str]) -> None:
        """Make ``digests`` the only tokens of ``role``."""
        wanted = set(digests)
        with self._begin("storing tokens", write=True) as c:
            c.execute(delete(t.tokens).where(t.tokens.c.role == role))
            c.execute(delete(t.tokens).where(t.tokens.c.sha256.in_(wanted)))
            if wanted:
                stamp = now()
                c.execute(
                    insert(t.tokens),
                    [{"sha256": d, "role": role, "created_at": stamp} for d in sorted(wanted)],
                )

    def role_for(self, digest: str) -> str | None:
        with self._begin("checking a token") as c:
            role = c.scalar(select(t.tokens.c.role).where(t.tokens.c.sha256 == digest))
        return None if role is None else str(role)

    def token_count(self, role: str) -> int:
        with self._begin("counting tokens") as c:
            count = c.scalar(select(func.count()).where(t.tokens.c.role == role))
        return int(count or 0)

    # settings -----------------------------------------------------------------------------

    def setting(self, name: str) -> Any | None:
        with self._begin("reading settings") as c:
            return c.scalar(select(t.settings.c.value).where(t.settings.c.name == name))

    def put_setting(self, name: str, value: Any) -> None:
        with self._begin("storing settings", write=True) as c:
            changed = c.execute(
                update(t.settings)
                .where(t.settings.c.name == name)
                .values(value=value, updated_at=now())
            ).rowcount
            if not changed:
                c.execute(insert(t.settings).values(name=name, value=value, updated_at=now()))

    # API keys -----------------------------------------------------------------------------

    def api_keys(self, tenant: str | None = None) -> list[KeyRow]:
        query = select(t.api_keys).order_by(t.api_keys.c.tenant, t.api_keys.c.created_at)
        if tenant is not None:
            query = query.where(t.api_keys.c.tenant == tenant)
        with self._begin("listing API keys") as c:
            return [_key(row) for row in c.execute(query).mappings()]

    def add_key(self, tenant: str, key_id: str, digest: str) -> KeyRow:
        row = {
            "tenant": tenant,
            "key_id": key_id,
            "sha256": digest,
            "source": "control",
            "created_at": now(),
            "revoked_at": None,
        }
        with self._begin("storing an API key", write=True) as c:
            c.execute(insert(t.api_keys).values(**row))
        return KeyRow(**row)  # type: ignore[arg-type]

    def revoke_key(self, tenant: str, key_id: str, *, from_fabric: bool) -> datetime:
        """Revoke a key; a fabric key is revoked by a row that records only the revocation."""
        stamp = now()
        with self._begin("revoking an API key", write=True) as c:
            done = c.execute(
                update(t.api_keys)
                .where(t.api_keys.c.tenant == tenant, t.api_keys.c.key_id == key_id)
                .values(revoked_at=func.coalesce(t.api_keys.c.revoked_at, stamp))
            ).rowcount
            if not done and from_fabric:
                c.execute(
                    insert(t.api_keys).values(
                        tenant=tenant,
                        key_id=key_id,
                        sha256=None,
                        source="fabric",
                        created_at=stamp,
                        revoked_at=stamp,
                    )
                )
            revoked = c.scalar(
                select(t.api_keys.c.revoked_at).where(
                    t.api_keys.c.tenant == tenant, t.api_keys.c.key_id == key_id
                )
            )
        return stamp if revoked is None else as_utc(revoked)

    def tenant_for_digest(self, digest: str) -> KeyRow | None:
        with self._begin("checking an API key") as c:
            row = (
                c.execute(select(t.api_keys).where(t.api_keys.c.sha256 == digest))
                .mappings()
                .first()
            )
        return None if row is None else _key(row)

    # bundles ------------------------------------------------------------------------------

    def add_bundle(self, make: Callable[[int], BundleRow]) -> BundleRow:
        """Store the bundle ``make(version)`` builds for the next version number."""
        with self._begin("storing a bundle", write=True) as c:
            if c.dialect.name == "postgresql":
                c.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _BUNDLE_LOCK})
            last = c.scalar(select(func.max(t.bundles.c.version)))
            row = make(int(last or 0) + 1)
            c.execute(
                insert(t.bundles).values(
                    version=row.version,
                    created_at=row.created_at,
                    content_sha256=row.content_sha256,
                    key_id=row.key_id,
                    catalog=row.catalog,
                    catalog_revision=row.catalog_revision,
                    signed=row.signed,
                    published_at=None,
                )
            )
            return row

    def bundles(self) -> list[BundleRow]:
        with self._begin("listing bundles") as c:
            rows = c.execute(select(t.bundles).order_by(t.bundles.c.version.desc())).mappings()
            return [_bundle(row) for row in rows]

    def latest_bundle(self) -> BundleRow | None:
        with self._begin("reading the newest bundle") as c:
            row = (
                c.execute(select(t.bundles).order_by(t.bundles.c.version.desc()).limit(1))
                .mappings()
                .first()
            )
        return None if row is None else _bundle(row)

    def bundle(self, version: int) -> BundleRow | None:
        with self._begin("reading a bundle") as c:
            row = (
                c.execute(select(t.bundles).where(t.bundles.c.version == version))
                .mappings()
                .first()
            )
        return None if row is None else _bundle(row)

    def unpublished(self) -> list[BundleRow]:
        with self._begin("listing unpublished bundles") as c:
            rows = c.execute(
                select(t.bundles)
                .where(t.bundles.c.published_at.is_(None))
                .order_by(t.bundles.c.version)
            ).mappings()
            return [_bundle(row) for row in rows]

    def mark_published(self, version: int) -> datetime:
        stamp = now()
        with self._begin("marking a bundle published", write=True) as c:
            c.execute(
                update(t.bundles)
                .where(t.bundles.c.version == version, t.bundles.c.published_at.is_(None))
                .values(published_at=stamp)
            )
        return stamp

    # plans --------------------------------------------------------------------------------

    def add_plan(self, row: dict[str, Any]) -> int:
        with self._begin("storing a plan", write=True) as c:
            result = c.execute(insert(t.plans).values(created_at=now(), **row))
            key = result.inserted_primary_key
            assert key is not None
            return int(key[0])

    def plans(self, limit: int) -> list[RowMapping]:
        query = select(t.plans).order_by(t.plans.c.id.desc()).limit(limit)
        with self._begin("listing plans") as c:
            return list(c.execute(query).mappings())

    def plan(self, plan_id: int) -> RowMapping | None:
        with self._begin("reading a plan") as c:
            return c.execute(select(t.plans).where(t.plans.c.id == plan_id)).mappings().first()

    # gateways -----------------------------------------------------------------------------

    def put_gateways(self, statuses: Iterable[dict[str, Any]]) -> None:
        """Keep the newest status of each gateway (a heartbeat never goes back in time)."""
        stamp = now()
        with self._begin("storing gateway status", write=True) as c:
            for status in statuses:
                gateway, seen = status["gateway"], float(status["seen_at"])
                changed = c.execute(
                    update(t.gateways)
                    .where(t.gateways.c.gateway == gateway, t.gateways.c.seen_at <= seen)
                    .values(status=status, seen_at=seen, read_at=stamp)
                ).rowcount
                if not changed:
                    exists = c.scalar(select(func.count()).where(t.gateways.c.gateway == gateway))
                    if not exists:
                        c.execute(
                            insert(t.gateways).values(
                                gateway=gateway, status=status, seen_at=seen, read_at=stamp
                            )
                        )

    def gateways(self) -> list[tuple[dict[str, Any], datetime]]:
        with self._begin("listing gateways") as c:
            rows = c.execute(
                select(t.gateways.c.status, t.gateways.c.read_at).order_by(t.gateways.c.gateway)
            )
            return [(dict(row[0]), as_utc(row[1])) for row in rows]
