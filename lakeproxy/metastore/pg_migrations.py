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
    # The checks of a write batch, in the order given (the store sorts them by key, so that
    # transactions lock rows in one order). Mode 'a' claims an absent key with a placeholder
    # row, which holds it as a row lock would; 's' and 'x' lock an existing row for share or
    # for update and compare its value. A check that does not hold raises SQLSTATE LP412 with
    # the check's 1-based position as the detail, which rolls back the whole statement.
    Migration(
        "create_lakeproxy_checks",
        "CREATE FUNCTION {schema}.lakeproxy_checks("
        " ps text[], ks bytea[], vs bytea[], modes text) RETURNS void"
        " LANGUAGE plpgsql AS $lakeproxy$\n"
        "DECLARE\n"
        "    held bytea;\n"
        "    holds boolean;\n"
        "BEGIN\n"
        "    FOR i IN 1 .. length(modes) LOOP\n"
        "        IF substr(modes, i, 1) = 'a' THEN\n"
        "            INSERT INTO {schema}.kv (p, k, v) VALUES (ps[i], ks[i], ''::bytea)\n"
        "                ON CONFLICT (p, k) DO NOTHING;\n"
        "            holds := FOUND;\n"
        "        ELSIF substr(modes, i, 1) = 'x' THEN\n"
        "            SELECT v INTO held FROM {schema}.kv WHERE p = ps[i] AND k = ks[i]\n"
        "                FOR UPDATE;\n"
        "            holds := FOUND AND held = vs[i];\n"
        "        ELSE\n"
        "            SELECT v INTO held FROM {schema}.kv WHERE p = ps[i] AND k = ks[i]\n"
        "                FOR SHARE;\n"
        "            holds := FOUND AND held = vs[i];\n"
        "        END IF;\n"
        "        IF NOT holds THEN\n"
        "            RAISE EXCEPTION USING ERRCODE = 'LP412',\n"
        "                MESSAGE = 'the record changed since it was read', DETAIL = i::text;\n"
        "        END IF;\n"
        "    END LOOP;\n"
        "END\n"
        "$lakeproxy$",
    ),
    # A whole write batch in one statement (one round trip, one implicit transaction): the
    # checks, then every operation in order. Kinds: 'p' upsert, 'd' delete a key, 'r' delete
    # the keys from oks[i] on, 'b' delete the keys in [oks[i], ovs[i]).
    Migration(
        "create_lakeproxy_write",
        "CREATE FUNCTION {schema}.lakeproxy_write("
        " cps text[], cks bytea[], cvs bytea[], modes text,"
        " ops text[], oks bytea[], ovs bytea[], kinds text) RETURNS void"
        " LANGUAGE plpgsql AS $lakeproxy$\n"
        "BEGIN\n"
        "    IF modes <> '' THEN\n"
        "        PERFORM {schema}.lakeproxy_checks(cps, cks, cvs, modes);\n"
        "    END IF;\n"
        "    FOR i IN 1 .. length(kinds) LOOP\n"
        "        CASE substr(kinds, i, 1)\n"
        "            WHEN 'p' THEN\n"
        "                INSERT INTO {schema}.kv (p, k, v) VALUES (ops[i], oks[i], ovs[i])\n"
        "                    ON CONFLICT (p, k) DO UPDATE SET v = excluded.v;\n"
        "            WHEN 'd' THEN\n"
        "                DELETE FROM {schema}.kv WHERE p = ops[i] AND k = oks[i];\n"
        "            WHEN 'r' THEN\n"
        "                DELETE FROM {schema}.kv WHERE p = ops[i] AND k >= oks[i];\n"
        "            ELSE\n"
        "                DELETE FROM {schema}.kv WHERE p = ops[i] AND k >= oks[i] AND k < ovs[i];\n"
        "        END CASE;\n"
        "    END LOOP;\n"
        "END\n"
        "$lakeproxy$",
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
