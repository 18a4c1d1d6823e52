"""Alembic environment: run on the connection :class:`supplymeter.operations.Operations` hands
over (``config.attributes["connection"]``), never on a URL of its own, so the schema is
upgraded in the same place, with the same credentials, as the data is written."""

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
