"""``manage.py ws4redis_status [--json]``: live status from Redis (see ws4redis_gevent.status)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ...settings import load
from ...status import as_json, collect, format_status


class Command(BaseCommand):
    help = (
        "Show the channels subscribed across all processes and hosts, the stored and history "
        "keys per facility, and the health of the Redis connection."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="print JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        status = collect(load())
        self.stdout.write(as_json(status) if options["json"] else format_status(status), ending="")
        if not status.ok:
            raise CommandError(f"Redis is unreachable: {status.error}")
