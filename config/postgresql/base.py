"""Django's PostgreSQL backend, with one change to how a pooled connection is handed out.

Each connection is tried (an empty query, psycopg_pool's own check) before Django uses it. When
it is dead, as every idle one is after the server restarted or failed over, it goes back to be
replaced and every other idle connection is tried at once, so the caller gets a live one
rather than the next dead one.

Why not CONN_HEALTH_CHECKS, which hands psycopg_pool the same check: the pool tries one
connection at a time and sleeps 1, 2, 4 … s after each dead one (psycopg #711, to avoid a busy
loop). After a restart with four idle connections the first request waited out the pool's 10 s
timeout and got a 503 (tests/chaos/test_postgres_restart.py)."""

from __future__ import annotations

from django.db.backends.postgresql import base

# A connection that fails again right after the pool was swept: the server is going away
# again; the caller gets the error (a 503) rather than a loop.
ATTEMPTS = 3


class DatabaseWrapper(base.DatabaseWrapper):
    def get_new_connection(self, conn_params):
        connection = super().get_new_connection(conn_params)
        if self.pool is None:
            return connection
        for attempt in range(1, ATTEMPTS + 1):
            try:
                self.pool.check_connection(connection)
                return connection
            except self.Database.Error:
                self.pool.putconn(connection)  # broken: discarded, and a new one is opened
                if attempt == ATTEMPTS:
                    raise
                self.pool.check()  # every other idle connection, now
                connection = super().get_new_connection(conn_params)
        raise AssertionError("unreachable")
