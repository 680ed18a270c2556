"""Records every SQL statement a process runs through Django, for tests to inspect.

Each database connection gets an execute wrapper as it is created (``connection_created``), so
nothing run through Django's database layer escapes, whichever greenlet or thread runs it. The
server exposes the log at ``/_queries/`` (GET: the statements, POST: clear).
"""

from __future__ import annotations

from collections import deque
from typing import Any

from django.db.backends.signals import connection_created

statements: deque[str] = deque(maxlen=10_000)


def _record(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
    statements.append(sql)
    return execute(sql, params, many, context)


def _wrap(sender: Any, connection: Any, **kwargs: Any) -> None:
    if _record not in connection.execute_wrappers:
        connection.execute_wrappers.append(_record)


def install() -> None:
    connection_created.connect(_wrap, dispatch_uid="ws4redis_test_project.querylog")
