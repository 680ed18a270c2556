"""Attack review: identity read from the session at login is never re-checked.

The app stores the user name and group names in the session at login, and websockets trust
them until the session ends (SESSION_COOKIE_AGE: two weeks by default). A member removed from
a group (an employee leaving the admins, a banned chat member), or a user set inactive, keeps
reading and writing that group's channels from any websocket opened later with the same
session. ``process_request_verifying_user`` (opt-in) now catches deactivated users and
password changes, but group names still come from the session, with it too.

By default this is the documented trade-off (no database query per handshake; docs/reliability.rst,
"Security"); with ``process_request_verifying_user`` group names are read from the database at
each handshake, so a removed member loses the group at once."""

from __future__ import annotations

import pytest

from ws4redis_gevent.publisher import RedisPublisher
from ws4redis_gevent.settings import Settings

FACILITY = "news"
VERIFYING = "ws4redis_gevent.django_request.process_request_verifying_user"


@pytest.mark.parametrize("process_request", [None, VERIFYING])
def test_removed_group_member_keeps_the_group_only_without_verification(
    start_django_server, browser, redis_url, process_request
):
    from django.contrib.auth.models import Group, User

    settings = {"WS4REDIS_PROCESS_REQUEST": process_request} if process_request else None
    server = start_django_server(settings=settings)
    john = browser(server, "john")  # member of chatters and admins at login
    user = User.objects.get(username="john")
    admins = Group.objects.get(name="admins")
    user.groups.remove(admins)
    try:
        with john.connect(f"/ws/{FACILITY}?subscribe-group") as ws:
            RedisPublisher(
                facility=FACILITY, groups=["admins"], settings=Settings(connection=redis_url)
            ).publish_message("for admins only")
            RedisPublisher(
                facility=FACILITY, groups=["chatters"], settings=Settings(connection=redis_url)
            ).publish_message("for chatters")
            expected = ["for chatters"] if process_request else ["for admins only", "for chatters"]
            assert sorted(ws.recv(timeout=5) for _ in expected) == sorted(expected)
    finally:
        user.groups.add(admins)
