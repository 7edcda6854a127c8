"""The row statements both SQL stores share: a (p, k, v) table, one dialect's placeholder."""

from __future__ import annotations


class RowStatements:
    """Point reads and writes of one key-value table (`p` partition, `k` key, `v` value).

    `mark` is the dialect's parameter placeholder (`?` for SQLite, `%s` for psycopg).
    """

    def __init__(self, table: str, mark: str) -> None:
        m = mark
        self.get = f"SELECT v FROM {table} WHERE p = {m} AND k = {m}"
        self.upsert = (
            f"INSERT INTO {table} (p, k, v) VALUES ({m}, {m}, {m}) "
            "ON CONFLICT (p, k) DO UPDATE SET v = excluded.v"
        )
        self.insert_new = (
            f"INSERT INTO {table} (p, k, v) VALUES ({m}, {m}, {m}) ON CONFLICT (p, k) DO NOTHING"
        )
        self.swap = f"UPDATE {table} SET v = {m} WHERE p = {m} AND k = {m} AND v = {m}"
        self.delete = f"DELETE FROM {table} WHERE p = {m} AND k = {m}"
        self.delete_from = f"DELETE FROM {table} WHERE p = {m} AND k >= {m}"
        self.delete_between = f"DELETE FROM {table} WHERE p = {m} AND k >= {m} AND k < {m}"
        # A keyset page: the caller appends the comparison with the first key and the rest.
        self.select_from = f"SELECT k, v FROM {table} WHERE p = {m} AND k "
