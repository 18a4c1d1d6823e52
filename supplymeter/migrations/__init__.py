"""Alembic migrations of the operations database (run by :mod:`supplymeter.operations`)."""
