#!/usr/bin/env python
"""The demo's manage.py. ``runserver`` starts an embedded redis-server when no Redis is set."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo_site.settings")
    from django.core.management import execute_from_command_line

    if sys.argv[1:2] == ["runserver"]:
        from demo_site.embedded_redis import start_unless_configured

        start_unless_configured()
    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
