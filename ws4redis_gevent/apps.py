"""The Django app ``ws4redis_gevent``: stores the user's identity in the session at login,
and registers the system checks of the websocket settings."""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig


class Ws4RedisConfig(AppConfig):
    name = "ws4redis_gevent"
    verbose_name = "Websockets for Redis (gevent)"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_in

        from .django_adapter import install_django

        install_django()  # the core reads Django's settings, sessions and hosts through it

        user_logged_in.connect(_remember_identity, dispatch_uid="ws4redis_gevent.login")

        from .checks import register_checks

        register_checks()


def _remember_identity(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    from .django_request import store_identity

    if request is not None and hasattr(request, "session"):
        store_identity(request.session, user)
