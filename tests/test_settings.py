"""Unit tests of settings, their defaults and their precedence (ws4redis_gevent/settings.py)."""

from __future__ import annotations

import os.path
import sys
import types
from collections.abc import Iterator

import pytest

from ws4redis_gevent.exceptions import ImproperlyConfigured
from ws4redis_gevent.settings import (
    Settings,
    configure,
    django_name,
    import_string,
    load,
    reset,
    resolve,
)


@pytest.fixture(autouse=True)
def clean_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No configure() options and no configured Django leak into or out of a test."""
    reset()
    # load() only consults Django when django.conf is imported; hide it if another test did.
    monkeypatch.delitem(sys.modules, "django.conf", raising=False)
    yield
    reset()


@pytest.fixture
def django_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[types.SimpleNamespace]:
    """A stand-in for a configured ``django.conf.settings``, read through the Django adapter
    (installed as the Django app's ready() installs it)."""
    from ws4redis_gevent import django_adapter, integration

    fake = types.SimpleNamespace(configured=True)
    monkeypatch.setattr(django_adapter, "django_settings", fake)
    previous = integration.current()
    integration.install(django_adapter.DJANGO)
    yield fake
    if previous is None:
        integration.uninstall()
    else:
        integration.install(previous)


def test_defaults_match_ws4redis() -> None:
    """The defaults are ws4redis' defaults, plus a 1 MiB message limit."""
    defaults = Settings()
    assert defaults.websocket_url == "/ws/"
    assert defaults.expire == 3600
    assert defaults.heartbeat is None
    assert defaults.prefix is None
    assert defaults.allowed_channels is None
    assert defaults.process_request is None
    assert defaults.subscriber == "ws4redis_gevent.subscriber.RedisSubscriber"
    assert defaults.max_message_size == 1024 * 1024


def test_load_without_options_gives_defaults() -> None:
    """With nothing configured, load() returns the defaults."""
    assert load() == Settings()


def test_connection_default_is_not_shared() -> None:
    """Each Settings gets its own connection dict."""
    assert Settings().connection == {}
    assert Settings().connection is not Settings().connection


def test_settings_are_frozen() -> None:
    """Settings cannot be changed after they are built."""
    with pytest.raises(AttributeError):
        Settings().expire = 5  # type: ignore[misc]


@pytest.mark.parametrize("url", ["ws/", "/ws", "ws", "", "http://x/ws/"])
def test_bad_websocket_url_rejected(url: str) -> None:
    """WEBSOCKET_URL must start and end with a slash."""
    with pytest.raises(ImproperlyConfigured):
        Settings(websocket_url=url)
    with pytest.raises(ImproperlyConfigured):
        load(websocket_url=url)


@pytest.mark.parametrize("url", ["/", "/ws/", "/api/websocket/"])
def test_good_websocket_url_accepted(url: str) -> None:
    """Any path that starts and ends with a slash is accepted."""
    assert load(websocket_url=url).websocket_url == url


@pytest.mark.parametrize("size", [0, -1])
def test_non_positive_max_message_size_rejected(size: int) -> None:
    """The message size limit must be positive."""
    with pytest.raises(ImproperlyConfigured):
        Settings(max_message_size=size)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("ping_interval", 0),
        ("ping_timeout", -1.0),
        ("subscribe_timeout", 0),
        ("max_pending_messages", 0),
        ("publish_burst", 0),
        ("publish_burst", 0.5),
        ("publish_rate", 0),
        ("max_pending_bytes", 0),
        ("max_pending_bytes", "8M"),
        ("ping_rate", 0),
        ("ping_rate", -1.0),
        ("ping_burst", 0),
        ("ping_burst", None),
        ("max_connections", 0),
        ("ping_interval", "20"),
        ("ping_interval", True),
        ("handshake_timeout", "10"),
    ],
)
def test_non_positive_intervals_and_limits_rejected(option: str, value: object) -> None:
    """Intervals and limits must be positive numbers (a ping interval of 0 would ping in a
    loop, a queue limit of 0 would close every websocket, a burst below 1 would refuse every
    message): the error names the setting."""
    with pytest.raises(ImproperlyConfigured, match=django_name(option)):
        Settings(**{option: value})


def test_heartbeat_interval_is_checked_only_with_a_heartbeat() -> None:
    """An unused heartbeat interval is not an error; with a heartbeat it must be positive."""
    assert Settings(heartbeat_interval=0).heartbeat is None
    with pytest.raises(ImproperlyConfigured, match="WS4REDIS_HEARTBEAT_INTERVAL"):
        Settings(heartbeat="--heartbeat--", heartbeat_interval=0)


def test_limits_that_can_be_off_accept_none_and_zero() -> None:
    """The publish rate, the connection limit and the subscribe timeout turn off with None,
    the handshake timeout with 0 or None, as docs/settings.rst says; infinity is a number."""
    settings = Settings(
        publish_rate=None,
        ping_rate=None,
        max_connections=None,
        subscribe_timeout=None,
        handshake_timeout=None,
    )
    assert settings.publish_rate is settings.max_connections is settings.subscribe_timeout is None
    assert settings.ping_rate is None
    assert Settings(handshake_timeout=0).handshake_timeout == 0
    assert Settings(ping_interval=float("inf")).ping_interval == float("inf")


def test_write_window_is_off_by_default_and_takes_milliseconds() -> None:
    """WS4REDIS_WRITE_WINDOW: 0 (off) by default; 0 to 1000 ms, fractions allowed."""
    assert Settings().write_window == 0
    assert Settings(write_window=2.5).write_window == 2.5
    assert Settings(write_window=1000).write_window == 1000


@pytest.mark.parametrize("value", [-1, 1000.5, float("nan"), None, True, "5"])
def test_bad_write_window_rejected(value: object) -> None:
    with pytest.raises(ImproperlyConfigured, match="WS4REDIS_WRITE_WINDOW"):
        Settings(write_window=value)  # type: ignore[arg-type]


def test_replace_unknown_option_raises() -> None:
    """An unknown option name is a configuration error naming it."""
    with pytest.raises(ImproperlyConfigured, match="expiry"):
        Settings().replace(expiry=10)


def test_replace_returns_a_copy() -> None:
    """replace() leaves the original untouched."""
    original = Settings()
    changed = original.replace(expire=7, prefix="p")
    assert (changed.expire, changed.prefix) == (7, "p")
    assert (original.expire, original.prefix) == (3600, None)


def test_load_unknown_option_raises() -> None:
    """load() with an unknown option raises ImproperlyConfigured."""
    with pytest.raises(ImproperlyConfigured):
        load(no_such_option=1)


def test_configure_unknown_option_raises_and_stores_nothing() -> None:
    """configure() validates at once and keeps nothing from a failed call."""
    with pytest.raises(ImproperlyConfigured):
        configure(expire=5, no_such_option=1)
    assert load().expire == 3600


def test_configure_bad_value_raises_and_stores_nothing() -> None:
    """configure() rejects a bad value when it is called, not later."""
    with pytest.raises(ImproperlyConfigured):
        configure(websocket_url="nope")
    assert load().websocket_url == "/ws/"


def test_configure_applies_to_later_loads() -> None:
    """Options given to configure() are used by every load() afterwards."""
    configure(prefix="app", expire=10)
    configure(heartbeat="--hb--")
    loaded = load()
    assert (loaded.prefix, loaded.expire, loaded.heartbeat) == ("app", 10, "--hb--")


def test_load_options_override_configure() -> None:
    """Keyword options to load() win over configure()."""
    configure(prefix="app", expire=10)
    loaded = load(expire=20)
    assert (loaded.prefix, loaded.expire) == ("app", 20)


def test_reset_forgets_configure() -> None:
    """reset() returns to the defaults."""
    configure(expire=10)
    reset()
    assert load() == Settings()


def test_django_settings_are_read(django_settings: types.SimpleNamespace) -> None:
    """WEBSOCKET_URL and WS4REDIS_* settings of a configured Django are used."""
    django_settings.WEBSOCKET_URL = "/sockets/"
    django_settings.WS4REDIS_EXPIRE = 5
    django_settings.WS4REDIS_PREFIX = "dj"
    django_settings.WS4REDIS_UNRELATED = "ignored"
    loaded = load()
    assert (loaded.websocket_url, loaded.expire, loaded.prefix) == ("/sockets/", 5, "dj")


def test_precedence_defaults_django_configure_options(
    django_settings: types.SimpleNamespace,
) -> None:
    """Defaults < Django settings < configure() < load() options."""
    django_settings.WS4REDIS_EXPIRE = 1
    django_settings.WS4REDIS_PREFIX = "dj"
    django_settings.WS4REDIS_HEARTBEAT = "dj-hb"
    configure(prefix="conf", heartbeat="conf-hb")
    loaded = load(heartbeat="opt-hb")
    assert loaded.websocket_url == "/ws/"  # default
    assert loaded.expire == 1  # Django
    assert loaded.prefix == "conf"  # configure()
    assert loaded.heartbeat == "opt-hb"  # option


def test_unconfigured_django_is_ignored(django_settings: types.SimpleNamespace) -> None:
    """An imported but unconfigured Django contributes nothing."""
    django_settings.configured = False
    django_settings.WS4REDIS_EXPIRE = 1
    assert load().expire == 3600


def test_django_names() -> None:
    """Options map to WEBSOCKET_URL and WS4REDIS_<NAME>."""
    assert django_name("websocket_url") == "WEBSOCKET_URL"
    assert django_name("expire") == "WS4REDIS_EXPIRE"
    assert django_name("allowed_channels") == "WS4REDIS_ALLOWED_CHANNELS"


# import_string and resolve


def test_import_string_imports_dotted_path() -> None:
    """A dotted path gives the named attribute of the module."""
    assert import_string("os.path.join") is os.path.join
    assert import_string("ws4redis_gevent.settings.Settings") is Settings


@pytest.mark.parametrize(
    "path", ["join", "", "os.path.no_such_name", "no_such_module_xyz.thing", ".join"]
)
def test_import_string_errors(path: str) -> None:
    """Not a dotted path, a missing module or a missing name: ImproperlyConfigured."""
    with pytest.raises(ImproperlyConfigured):
        import_string(path)


def test_import_string_error_chains_the_cause() -> None:
    """The import failure is kept as the cause."""
    with pytest.raises(ImproperlyConfigured) as info:
        import_string("no_such_module_xyz.thing")
    assert isinstance(info.value.__cause__, ImportError)


def test_resolve_dotted_path_callable_and_none() -> None:
    """resolve() imports strings, passes callables and classes through, keeps None."""
    assert resolve("os.path.join") is os.path.join
    assert resolve(os.path.join) is os.path.join
    assert resolve(Settings) is Settings
    assert resolve(None) is None


def test_resolve_bad_path_raises() -> None:
    """resolve() of a path that cannot be imported raises ImproperlyConfigured."""
    with pytest.raises(ImproperlyConfigured):
        resolve("os.path.no_such_name")


def test_module_does_not_import_django() -> None:
    """Loading settings without Django in use does not import Django."""
    load()
    assert "django.conf" not in sys.modules
