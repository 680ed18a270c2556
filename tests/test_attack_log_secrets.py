"""Attack review: session keys are credentials; they must not reach the server's log.

Channel names of the session audience hold the session key (``session:KEY:FACILITY``). The
labels of recovery frames were made to reveal no session key, but the middleware's INFO line
``WEBSOCKET /ws/news connected [...]`` lists the subscribed channel names, session key
included: anyone who reads the logs (log shipping, a support engineer, a log aggregator with
wide access) can take over the session of every user who opened a ``subscribe-session``
websocket."""

from __future__ import annotations

FACILITY = "news"


def test_session_key_is_not_logged(start_django_server, browser):
    # Django's logging as a site that keeps INFO lines (the test project's root is WARNING).
    logging = {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"stderr": {"class": "logging.StreamHandler"}},
        "root": {"handlers": ["stderr"], "level": "INFO"},
    }
    server = start_django_server(settings={"LOGGING": logging})
    john = browser(server, "john")
    key = john.session_key
    with john.connect(f"/ws/{FACILITY}?subscribe-session&subscribe-user") as ws:
        ws.ping().wait(5)
    err = server.stop()
    assert "WEBSOCKET" in err, "the server logged no websocket line at INFO"
    assert key not in err, [line for line in err.splitlines() if key in line][:2]


def test_loggable_hides_session_keys_only():
    from ws4redis_gevent.keys import channel_name, loggable

    key = "k3y:with%colon"
    assert key not in loggable(channel_name("app", "session", "news", key))
    assert loggable(channel_name(None, "session", "news", key)) == "session:***:news"
    assert loggable(b"user:john:news") == "user:john:news"
    assert loggable("group:org%3A1:news") == "group:org%3A1:news"
    assert loggable("broadcast:session") == "broadcast:session"
