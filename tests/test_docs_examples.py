"""The code samples of the ws4redis chapter "Using Websockets for Redis", run unchanged.

Only the import prefix is renamed (``ws4redis`` -> ``ws4redis_gevent``). Each sample runs here,
in a Django-configured process whose WS4REDIS_CONNECTION points at the test redis-server, and a
real websocket client of a real server (the test project) receives what it publishes.
"""

from __future__ import annotations

import pytest
import redis

FACILITY = "foobar"  # the doc's facility
DOC_SESSION_KEY = "wnqd0gbw5obpnj50zwh6yaq2yz4o8g9x"  # the doc's session key


@pytest.fixture(autouse=True)
def doc_settings(ws4redis_settings, redis_url):
    """The site's settings: only the Redis connection is set, as a Django project would."""
    from django.test import override_settings

    with override_settings(WS4REDIS_CONNECTION=redis_url):
        yield


def request_of(session_key: str):
    """A view's request for this session, as SessionMiddleware and AuthenticationMiddleware
    make it."""
    from importlib import import_module

    from django.conf import settings
    from django.contrib.auth import get_user
    from django.test import RequestFactory

    request = RequestFactory().get("/")
    request.session = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    request.user = get_user(request)
    return request


def test_broadcast_notification(django_server):
    """RedisPublisher(facility, broadcast=True) reaches ?subscribe-broadcast."""
    with django_server.connect("/ws/foobar?subscribe-broadcast") as ws:
        from ws4redis_gevent.publisher import RedisPublisher
        from ws4redis_gevent.redis_store import RedisMessage

        redis_publisher = RedisPublisher(facility='foobar', broadcast=True)
        message = RedisMessage('Hello World')
        # and somewhere else
        redis_publisher.publish_message(message)

        assert ws.recv(timeout=5) == "Hello World"


def test_user_notification(django_server, browser):
    """users=['john', 'mary'] reaches both users' ?subscribe-user websockets."""
    john, mary = browser(django_server, "john"), browser(django_server, "mary")
    with john.connect("/ws/foobar?subscribe-user") as ws_john, \
            mary.connect("/ws/foobar?subscribe-user") as ws_mary:
        from ws4redis_gevent.publisher import RedisPublisher
        from ws4redis_gevent.redis_store import RedisMessage

        redis_publisher = RedisPublisher(facility='foobar', users=['john', 'mary'])
        message = RedisMessage('Hello World')
        # and somewhere else
        redis_publisher.publish_message(message)

        assert ws_john.recv(timeout=5) == "Hello World"
        assert ws_mary.recv(timeout=5) == "Hello World"


def test_user_notification_to_self(django_server, browser):
    """users=[SELF] with the request reaches the logged-in user only."""
    john, mary = browser(django_server, "john"), browser(django_server, "mary")
    request = request_of(john.session_key)
    with john.connect("/ws/foobar?subscribe-user") as ws_john, \
            mary.connect("/ws/foobar?subscribe-user") as ws_mary:
        from ws4redis_gevent.publisher import RedisPublisher
        from ws4redis_gevent.redis_store import SELF, RedisMessage

        redis_publisher = RedisPublisher(facility='foobar', users=[SELF], request=request)
        redis_publisher.publish_message(RedisMessage('Hello John'))

        RedisPublisher(facility='foobar', users=['mary']).publish_message('Hello Mary')
        assert ws_mary.recv(timeout=5) == "Hello Mary"  # not John's, published before
        assert ws_john.recv(timeout=5) == "Hello John"


def test_group_notification(django_server, browser):
    """groups=['chatters'] with a plain str reaches every member's ?subscribe-group."""
    john, mary = browser(django_server, "john"), browser(django_server, "mary")
    with john.connect("/ws/foobar?subscribe-group") as ws_john, \
            mary.connect("/ws/foobar?subscribe-group") as ws_mary:
        from ws4redis_gevent.publisher import RedisPublisher

        redis_publisher = RedisPublisher(facility='foobar', groups=['chatters'])

        # and somewhere else
        redis_publisher.publish_message('Hello World')

        assert ws_john.recv(timeout=5) == "Hello World"
        assert ws_mary.recv(timeout=5) == "Hello World"


def test_group_notification_to_self(django_server, browser):
    """groups=[SELF] means all the groups of the logged-in user (mary: chatters)."""
    john, mary = browser(django_server, "john"), browser(django_server, "mary")
    with john.connect("/ws/foobar?subscribe-group") as ws_john:
        from ws4redis_gevent.publisher import RedisPublisher
        from ws4redis_gevent.redis_store import SELF

        request = request_of(mary.session_key)
        redis_publisher = RedisPublisher(facility='foobar', groups=[SELF], request=request)
        assert redis_publisher.channels == ["group:chatters:foobar"]
        redis_publisher.publish_message('Hello World')

        assert ws_john.recv(timeout=5) == "Hello World"


@pytest.fixture
def doc_session(django_site):
    """A session stored under the doc's session key."""
    from datetime import timedelta

    from django.contrib.sessions.models import Session
    from django.utils import timezone

    Session.objects.save(DOC_SESSION_KEY, {"visits": 1}, timezone.now() + timedelta(hours=1))
    yield DOC_SESSION_KEY
    Session.objects.filter(session_key=DOC_SESSION_KEY).delete()


def test_session_notification(django_server, doc_session):
    """sessions=[key] reaches the websockets of the client owning that session key."""
    cookie = {"Cookie": f"sessionid={doc_session}"}
    with django_server.connect("/ws/foobar?subscribe-session", additional_headers=cookie) as ws:
        from ws4redis_gevent.publisher import RedisPublisher
        from ws4redis_gevent.redis_store import RedisMessage

        redis_publisher = RedisPublisher(facility='foobar', sessions=['wnqd0gbw5obpnj50zwh6yaq2yz4o8g9x'])  # noqa: E501
        message = RedisMessage('Hello World')

        # and somewhere else
        redis_publisher.publish_message(message)

        assert ws.recv(timeout=5) == "Hello World"


def test_publish_flags_use_the_documented_channel_names(django_server, browser, redis_url):
    """?publish-broadcast, ?publish-user, ?publish-session publish what the client sends on
    broadcast:foobar, user:john:foobar and session:KEY:foobar."""
    john = browser(django_server, "john")
    channels = ["broadcast:foobar", "user:john:foobar", f"session:{john.session_key}:foobar"]
    with redis.Redis.from_url(redis_url) as client, client.pubsub() as listener:
        listener.subscribe(*channels)
        for _ in channels:
            assert listener.get_message(timeout=5)["type"] == "subscribe"
        path = "/ws/foobar?publish-broadcast&publish-user&publish-session"
        with john.connect(path) as ws:
            ws.send("52.52,13.40")
            received = [listener.get_message(timeout=5) for _ in channels]
        assert sorted(m["channel"].decode() for m in received) == sorted(channels)
        assert {m["data"] for m in received} == {b"52.52,13.40"}


def test_fetch_message(django_server, browser):
    """fetch_message(request, facility, 'any') on an empty RedisPublisher finds the persisted
    message the client published through its websocket."""
    john = browser(django_server, "john")
    with john.connect("/ws/foobar?publish-user") as ws:
        ws.send("52.52,13.40")
        assert ws.ping().wait(5)  # the server handles frames in order: the message is published
    request = request_of(john.session_key)

    from ws4redis_gevent.publisher import RedisPublisher

    # if the publisher is required only for fetching messages, use an
    # empty constructor, otherwise reuse an existing redis_publisher
    redis_publisher = RedisPublisher()

    # and somewhere else
    facility = 'foobar'
    audience = 'any'
    message = redis_publisher.fetch_message(request, facility, audience)

    assert message == b"52.52,13.40"
    assert redis_publisher.fetch_message(request_of(browser(django_server, "mary").session_key),
                                         facility, audience) is None


ALLOWED_BY_INTERSECTION = {
    "WS4REDIS_ALLOWED_CHANNELS": "tests.django_project.allowed.get_allowed_channels"
}


def test_allowed_channels_example_discards_others_silently(
    start_django_server, browser, redis_url
):
    """The doc's get_allowed_channels keeps subscribe-broadcast and subscribe-group; the
    other flags are dropped without an error."""
    server = start_django_server(settings=ALLOWED_BY_INTERSECTION)
    john = browser(server, "john")
    with redis.Redis.from_url(redis_url) as client, client.pubsub() as listener:
        listener.subscribe("broadcast:foobar")
        assert listener.get_message(timeout=5)["type"] == "subscribe"
        path = "/ws/foobar?subscribe-broadcast&subscribe-group&subscribe-user&publish-broadcast"
        with john.connect(path) as ws:
            assert server.stats()["channels"] == {
                "broadcast:foobar": 1, "group:admins:foobar": 1, "group:chatters:foobar": 1,
            }
            ws.send("not allowed to publish")
            assert ws.ping().wait(5)  # handled in order: had it been published, it is in Redis now
            client.publish("broadcast:foobar", "from the server")
            assert listener.get_message(timeout=5)["data"] == b"from the server"
            assert ws.recv(timeout=5) == "from the server"
