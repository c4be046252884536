"""Django's SQLite backend, with the database file readable by its owner only.

The settings use it (ENGINE "llmobserve_site.sqlite") for every SQLite
database: the embedded default under var/, a `sqlite://` DATABASE_URL and the
test databases.  The file holds the session keys; SQLite would create it (and
its -wal and -shm files) with the process umask, typically world-readable.
"""

from __future__ import annotations

from typing import Any

from django.db.backends.sqlite3 import base

from llmobserve_site.owner_only import owner_only_sqlite


class DatabaseWrapper(base.DatabaseWrapper):
    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        owner_only_sqlite(conn_params.get("database", ""))
        return super().get_new_connection(conn_params)
