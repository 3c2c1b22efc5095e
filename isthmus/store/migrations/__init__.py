"""Alembic migrations of the store's schema; run them with ``isthmus.store.migrate``."""
