"""Schema migrations of the PostgreSQL metadata store.

The store lives in one PostgreSQL schema (created when missing). Its steps are SQL texts
applied in order; `schema_version` records one row per applied step, so the version of a
schema is the highest step number it holds. Opening a store applies the missing steps in one
transaction that first takes an advisory lock named after the schema, which serializes
processes that open a fresh schema at the same moment: the second one finds the work done.

Never edit a step that has shipped; append a new one.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from lakeproxy.errors import StorageError

VERSION_TABLE = "schema_version"


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema step; `{schema}` in `sql` is replaced by the quoted schema name."""

    name: str
    sql: str


MIGRATIONS: tuple[Migration, ...] = (
    # One table holds every partition. bytea compares bytewise, so the primary-key index
    # orders keys exactly as the port demands; the "C" collation keeps partition names out
    # of locale rules.
    Migration(
        "create_kv",
        'CREATE TABLE {schema}.kv ('
        ' p text COLLATE "C" NOT NULL,'
        " k bytea NOT NULL,"
        " v bytea NOT NULL,"
        " PRIMARY KEY (p, k))",
    ),
)
"""Every schema step, oldest first; step N (1-based) brings a schema to version N."""

SCHEMA_VERSION = len(MIGRATIONS)


def quote_ident(name: str) -> str:
    """Quote an SQL identifier (a schema name) so that any text is taken literally."""
    return '"' + name.replace('"', '""') + '"'


async def schema_version(conn: psycopg.AsyncConnection[object], schema: str) -> int:
    """Return the schema version of `schema`: 0 when it or its version table is missing."""
    cur = await conn.execute(
        "SELECT to_regclass(%s) IS NOT NULL", (f"{quote_ident(schema)}.{VERSION_TABLE}",)
    )
    row = await cur.fetchone()
    if row is None or not row[0]:
        return 0
    cur = await conn.execute(
        f"SELECT coalesce(max(version), 0) FROM {quote_ident(schema)}.{VERSION_TABLE}"
    )
    row = await cur.fetchone()
    return 0 if row is None else int(row[0])


def _check_known(version: int, known: int, schema: str) -> None:
    if version > known:
        raise StorageError(
            f"the metadata schema {schema!r} has schema version {version}, newer than the "
            f"{known} this lakeproxy knows; upgrade lakeproxy to open it",
            schema=schema,
            version=version,
        )


async def migrate(
    conn: psycopg.AsyncConnection[object],
    schema: str,
    migrations: tuple[Migration, ...] = MIGRATIONS,
) -> int:
    """Create `schema` if needed, apply the steps it lacks in one transaction, return its version.

    Args:
        conn: A connection in autocommit mode, outside any transaction.
        schema: The PostgreSQL schema that holds the store.
        migrations: The steps to apply; the default is the store's schema.

    Raises:
        StorageError: The schema is newer than `migrations`.
        psycopg.Error: PostgreSQL failed (the caller translates it).
    """
    known = len(migrations)
    current = await schema_version(conn, schema)
    _check_known(current, known, schema)
    if current == known:
        return current
    quoted = quote_ident(schema)
    async with conn.transaction():
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"lakeproxy:{schema}",)
        )
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quoted}")
        await conn.execute(
            f"CREATE TABLE IF NOT EXISTS {quoted}.{VERSION_TABLE} ("
            " version integer PRIMARY KEY,"
            " name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        current = await schema_version(conn, schema)
        _check_known(current, known, schema)
        for number in range(current + 1, known + 1):
            step = migrations[number - 1]
            await conn.execute(step.sql.replace("{schema}", quoted).encode())
            await conn.execute(
                f"INSERT INTO {quoted}.{VERSION_TABLE} (version, name) VALUES (%s, %s)",
                (number, step.name),
            )
    return known
