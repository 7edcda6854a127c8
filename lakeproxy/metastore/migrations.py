"""Schema migrations of the SQLite metadata store.

The schema is a list of steps applied in order. `schema_version` records one row per applied
step, so the version of a database is the highest step number it holds. Opening a database
applies the missing steps in a single `BEGIN IMMEDIATE` transaction, which also serializes
processes that open a fresh file at the same moment: the second one finds the work done.

Never edit a step that has shipped; append a new one.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime

from lakeproxy.errors import StorageError
from lakeproxy.metastore._sqlite_utils import Database
from lakeproxy.metastore.base import LARGE_VALUES_SUFFIX

Migration = Callable[[Database], None]

VERSION_TABLE = "schema_version"


def _create_kv(db: Database) -> None:
    """Create the table that holds every partition.

    Raw DDL because sqlite-utils cannot express WITHOUT ROWID. WITHOUT ROWID clusters rows by
    (partition, key), so a scan is one sequential walk of the primary-key b-tree. STRICT makes
    SQLite reject a TEXT key or value, which would otherwise sort apart from every BLOB key.
    """
    db.execute(
        "CREATE TABLE kv ("
        " p TEXT NOT NULL,"
        " k BLOB NOT NULL,"
        " v BLOB NOT NULL,"
        " PRIMARY KEY (p, k)"
        ") STRICT, WITHOUT ROWID"
    )


def _large_values_apart(db: Database) -> None:
    """Move the partitions of large values (`holds_large_values`) to a table of their own.

    A WITHOUT ROWID table stores each row inside its primary-key b-tree, so a value of many
    KiB spills into overflow pages that every lookup and insert must walk and rebalance around;
    in a rowid table with a unique index on (partition, key) the index stays small and the
    values sit in their own pages. Measured on 7.7 KB values: reads about 6x, writes about
    twice as fast. Small rows stay clustered by key in `kv`, where scans are sequential.
    """
    db.execute(
        "CREATE TABLE kvl ("
        " p TEXT NOT NULL,"
        " k BLOB NOT NULL,"
        " v BLOB NOT NULL"
        ") STRICT"
    )
    db.execute("CREATE UNIQUE INDEX kvl_key ON kvl (p, k)")
    pattern = "*" + LARGE_VALUES_SUFFIX
    db.execute("INSERT INTO kvl (p, k, v) SELECT p, k, v FROM kv WHERE p GLOB ?", [pattern])
    db.execute("DELETE FROM kv WHERE p GLOB ?", [pattern])


MIGRATIONS: tuple[Migration, ...] = (_create_kv, _large_values_apart)
"""Every schema step, oldest first; step N (1-based) brings a database to version N."""

SCHEMA_VERSION = len(MIGRATIONS)


def schema_version(db: Database) -> int:
    """Return the schema version of `db`: 0 for a fresh file."""
    if not db[VERSION_TABLE].exists():
        return 0
    row = db.execute(f"SELECT coalesce(max(version), 0) FROM {VERSION_TABLE}").fetchone()
    return int(row[0])


def _check_known(version: int, known: int, path: str) -> None:
    if version > known:
        raise StorageError(
            f"the metadata database {path} has schema version {version}, newer than the "
            f"{known} this lakeproxy knows; upgrade lakeproxy to open it",
            path=path,
            version=version,
        )


def migrate(db: Database, path: str, migrations: tuple[Migration, ...] = MIGRATIONS) -> int:
    """Apply the steps `db` lacks, all in one transaction, and return the resulting version.

    Args:
        db: A connection in driver autocommit mode (``isolation_level=None``), outside any
            transaction.
        path: The database file, for error messages.
        migrations: The steps to apply; the default is the store's schema.

    Raises:
        StorageError: The database is newer than `migrations` or SQLite failed.
    """
    known = len(migrations)
    try:
        current = schema_version(db)
        _check_known(current, known, path)
        if current == known:
            return current
        db.conn.execute("BEGIN IMMEDIATE")
        try:
            db.table(VERSION_TABLE).create(
                {"version": int, "name": str, "applied_at": str},
                pk="version",
                if_not_exists=True,
            )
            current = schema_version(db)
            _check_known(current, known, path)
            for number in range(current + 1, known + 1):
                step = migrations[number - 1]
                step(db)
                db.table(VERSION_TABLE).insert(
                    {
                        "version": number,
                        "name": step.__name__.lstrip("_"),
                        "applied_at": datetime.now(UTC).isoformat(),
                    }
                )
            db.conn.execute("COMMIT")
        except BaseException:
            if db.conn.in_transaction:
                db.conn.execute("ROLLBACK")
            raise
    except sqlite3.Error as exc:
        raise StorageError(
            f"cannot migrate the metadata database {path}: {exc}", path=path
        ) from exc
    return known
