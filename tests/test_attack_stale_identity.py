"""Attack review: identity read from the session at login is never re-checked.

The app stores the user name and group names in the session at login, and websockets trust
them until the session ends (SESSION_COOKIE_AGE: two weeks by default). A member removed from
a group (an employee leaving the admins, a banned chat member), or a user set inactive, keeps
reading and writing that group's channels from any websocket opened later with the same
session. README documents it for password changes only.

Fails now; passes once group membership (and ``is_active``) is verified at the handshake, or
the app refreshes or revokes stored identities when membership changes."""

from __future__ import annotations

from ws4redis_gevent.publisher import RedisPublisher
from ws4redis_gevent.settings import Settings

FACILITY = "news"


def test_removed_group_member_no_longer_gets_the_group(start_django_server, browser, redis_url):
    from django.contrib.auth.models import Group, User

    server = start_django_server()
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
            assert ws.recv(timeout=5) == "for chatters"
    finally:
        user.groups.add(admins)


def test_inactive_user_keeps_no_identity(start_django_server, browser, redis_url):
    from django.contrib.auth.models import User

    server = start_django_server()
    john = browser(server, "john")
    User.objects.filter(username="john").update(is_active=False)
    try:
        with john.connect(f"/ws/{FACILITY}?subscribe-user") as ws:
            RedisPublisher(
                facility=FACILITY, users=["john"], settings=Settings(connection=redis_url)
            ).publish_message("for john")
            RedisPublisher(
                facility=FACILITY, broadcast=True, settings=Settings(connection=redis_url)
            ).publish_message("x")
            assert ws.recv(timeout=2) != "for john"
    except TimeoutError:
        pass  # nothing at all: no user channel
    finally:
        User.objects.filter(username="john").update(is_active=True)
