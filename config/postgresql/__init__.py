"""Django's PostgreSQL backend with a connection pool that survives a database restart (base.py)."""
