"""The Django adapter: hands the core what it needs from Django, as plain options and callables.

Installed by the app's ``ready()`` (``ws4redis_gevent`` in ``INSTALLED_APPS``), so every Django
process (``manage.py``, gunicorn or uWSGI loading ``get_wsgi_application()``, a task worker)
has it before a middleware or publisher reads its settings.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from django.conf import settings as django_settings
from django.core.exceptions import PermissionDenied

from . import django_request
from .django_hosts import host_policy
from .integration import Integration, install
from .settings import Settings, django_name


def django_options() -> dict[str, Any]:
    """The options set in Django's settings (read each time: ``override_settings`` works)."""
    if not django_settings.configured:
        return {}
    options = {}
    for option in fields(Settings):
        name = django_name(option.name)
        if hasattr(django_settings, name):
            options[option.name] = getattr(django_settings, name)
    return options


DJANGO = Integration(
    name="django",
    options=django_options,
    make_request=django_request.make_request,
    process_request=django_request.process_request,
    close_connections=django_request.close_database_connections,
    host_policy=host_policy,
    permission_denied=(PermissionDenied,),
    testing="ws4redis_gevent.testing.django",
)


def install_django() -> None:
    """Make Django the process's framework (called by the app's ``ready()``)."""
    install(DJANGO)
