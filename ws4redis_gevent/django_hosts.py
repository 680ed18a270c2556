"""Django adapter of the Host check: maps Django's settings onto ``hosts.HostPolicy``.

``ALLOWED_HOSTS`` (with Django's rule: ``DEBUG`` and an empty list allow the loopback names),
``USE_X_FORWARDED_HOST`` and ``SECURE_PROXY_SSL_HEADER`` mean for websockets what they mean for
every other request of the site. ``WS4REDIS_ALLOWED_HOSTS``, when set, replaces
``ALLOWED_HOSTS`` for websockets only.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.conf import settings

from .hosts import LOOPBACK_HOSTS, HostPolicy, check_host_list


def host_policy(allowed_hosts: Iterable[str] | None = None) -> HostPolicy:
    """The HostPolicy of this Django site; ``allowed_hosts`` is WS4REDIS_ALLOWED_HOSTS."""
    development = False
    if allowed_hosts is not None:
        hosts = check_host_list("WS4REDIS_ALLOWED_HOSTS", allowed_hosts)
        setting = "WS4REDIS_ALLOWED_HOSTS"
    else:
        hosts = check_host_list("ALLOWED_HOSTS", settings.ALLOWED_HOSTS)
        setting = "ALLOWED_HOSTS"
        if settings.DEBUG and not hosts:
            hosts = LOOPBACK_HOSTS  # as Django's HttpRequest.get_host()
            development = True
    header = settings.SECURE_PROXY_SSL_HEADER
    return HostPolicy(
        allowed_hosts=hosts,
        use_forwarded_host=bool(settings.USE_X_FORWARDED_HOST),
        secure_proxy_ssl_header=(str(header[0]), str(header[1])) if header else None,
        setting=setting,
        development=development,
    )
