"""``manage.py runserver`` serving HTTP and websockets together, under gevent, with autoreload.

It replaces Django's command when ``'ws4redis_gevent'`` is listed in INSTALLED_APPS **before**
``'django.contrib.staticfiles'`` (Django takes a command from the first app that has it). It
subclasses staticfiles' runserver when that app is installed, so static files are still served
(with DEBUG, or ``--insecure``), and Django's core runserver otherwise.

The autoreloader runs the server in a child process. That process (or the only process, with
``--noreload``) is monkey-patched by gevent before the reloader starts its threads, so the
reloader's loop becomes the main greenlet and the server runs beside it. Requests are logged
like Django's runserver; websocket connects and closes (logger ``ws4redis_gevent``) too.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import sys
import time
from typing import Any

import gevent
import greenlet
from django.apps import apps
from django.conf import settings
from django.db import connections
from django.utils import autoreload

if apps.is_installed("django.contrib.staticfiles"):
    from django.contrib.staticfiles.management.commands.runserver import (
        Command as BaseRunserverCommand,
    )
else:
    from django.core.management.commands.runserver import Command as BaseRunserverCommand

CLOSE_WAIT = 1.0  # seconds websocket clients get to answer our close frame at shutdown
RELOAD_EXIT_CODE = 3  # what the autoreloader's child exits with to be restarted
SERVER_TIME = "%d/%b/%Y %H:%M:%S"  # runserver's time stamps: [28/Nov/2026 04:30:00]

server_logger = logging.getLogger("django.server")
reload_logger = logging.getLogger("django.utils.autoreload")


def patch_gevent() -> None:
    """Monkey-patch the standard library for gevent (once), after Django's setup.

    Django made its database connection storage (a thread-local, thread-critical ``Local``) at
    import, before the patch: every greenlet of the main thread would share it, and so share
    connections. It is closed in the native thread and replaced by one made after the patch.
    """
    from gevent import monkey

    if monkey.is_module_patched("socket"):
        return
    connections.close_all()
    monkey.patch_all()
    from asgiref.local import Local

    connections._connections = Local(connections.thread_critical)


def show_websocket_log() -> None:
    """Print the ``ws4redis_gevent`` log like runserver's lines, unless LOGGING configured it."""
    logger = logging.getLogger("ws4redis_gevent")
    if logger.handlers or logger.level != logging.NOTSET:
        return
    from django.utils.log import ServerFormatter

    handler = logging.StreamHandler()
    handler.setFormatter(ServerFormatter("[{server_time}] {message}", SERVER_TIME, style="{"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def close_websockets(restarting: bool) -> None:
    """Close this process's websockets (1012 on reload, else 1001) and let clients answer."""
    from ws4redis_gevent.frames import CloseCode
    from ws4redis_gevent.relay import close_all, live_relays

    if restarting:
        closed = close_all(CloseCode.SERVICE_RESTART, "server restarting")
    else:
        closed = close_all(CloseCode.GOING_AWAY, "server shutting down")
    deadline = time.monotonic() + CLOSE_WAIT
    while closed and live_relays() and time.monotonic() < deadline:
        time.sleep(0.02)  # gevent's sleep: the relays finish their closing handshakes


def request_shutdown(main: greenlet.greenlet) -> None:
    """The SIGTERM and SIGINT handler of the serving process.

    A signal handler runs in whichever greenlet the signal interrupted, a websocket's maybe:
    raising SystemExit there would drop that websocket without a close frame. Instead, a
    greenlet of its own closes the websockets, then ends the main greenlet.
    """

    def shutdown() -> None:
        close_websockets(restarting=False)
        gevent.kill(main, SystemExit)

    gevent.spawn(shutdown)


def run_reloader_child(main_func: Any, **options: Any) -> None:
    """The child's half of Django's ``autoreload.run_with_reloader``, without the signal
    handler it installs (``request_shutdown`` is ours)."""
    reloader = autoreload.get_reloader()
    reload_logger.info("Watching for file changes with %s", reloader.__class__.__name__)
    autoreload.start_django(reloader, main_func, **options)


def wraps_websockets(application: Any) -> bool:
    """Whether ``application`` already is (or wraps) a WebsocketMiddleware, as in wsgi.py."""
    from ws4redis_gevent.middleware import WebsocketMiddleware

    for _ in range(5):
        if isinstance(application, WebsocketMiddleware):
            return True
        application = getattr(application, "application", None)  # StaticFilesHandler
        if application is None:
            return False
    return False


def make_handler_class() -> type:
    """The pywsgi handler: ws4redis' websocket handler, logging requests like runserver."""
    from ws4redis_gevent.backends.gevent import WebSocketHandler

    class RunserverHandler(WebSocketHandler):
        body_size = 0

        def handle_one_response(self) -> Any:
            self.body_size = 0
            return super().handle_one_response()

        def _write(self, data: bytes, *args: Any, **kwargs: Any) -> Any:
            # pywsgi writes the headers with _sendall and each part of the body with _write:
            # counting here gives the size runserver logs, the body's.
            self.body_size += len(data)
            return super()._write(data, *args, **kwargs)

        def log_request(self) -> None:
            code = getattr(self, "code", None) or 0
            if code == 101:
                return  # the middleware logs websocket connects and closes
            extra = {
                "request": self.socket,
                "status_code": code,
                "server_time": time.strftime(SERVER_TIME),
            }
            if code >= 500:
                level = logging.ERROR
            elif code >= 400:
                level = logging.WARNING
            else:
                level = logging.INFO
            server_logger.log(
                level, '"%s" %s %s', self.requestline, code, self.body_size, extra=extra
            )

    return RunserverHandler


class Command(BaseRunserverCommand):
    help = (
        "Starts a development server for HTTP and websockets (gevent), with autoreload. "
        "--nothreading has no effect: every request is a greenlet."
    )

    def run(self, **options: Any) -> None:
        serving = (
            not options["use_reloader"]
            or os.environ.get(autoreload.DJANGO_AUTORELOAD_ENV) == "true"
        )
        if not serving:  # the reloader's parent only restarts the child: no gevent needed
            super().run(**options)
            return
        # Before the reloader starts its threads: they become greenlets of this process.
        patch_gevent()
        main = greenlet.getcurrent()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *args: request_shutdown(main))
        restarting = False
        try:
            if options["use_reloader"]:
                run_reloader_child(self.inner_run, **options)
            else:
                self.inner_run(None, **options)
        except SystemExit as exc:
            restarting = exc.code == RELOAD_EXIT_CODE
            raise
        finally:
            close_websockets(restarting)

    def get_handler(self, *args: Any, **options: Any) -> Any:
        """Django's handler (with static files, as staticfiles' runserver), with websockets."""
        handler = super().get_handler(*args, **options)
        if wraps_websockets(handler):
            return handler
        from ws4redis_gevent.middleware import WebsocketMiddleware

        return WebsocketMiddleware(handler)

    def inner_run(self, *args: Any, **options: Any) -> None:
        autoreload.raise_last_exception()
        if not options["skip_checks"]:
            self.stdout.write("Performing system checks...\n\n")
            self.check(display_num_errors=True)
        self.check_migrations()
        connections.close_all()
        show_websocket_log()
        from gevent import pywsgi

        try:
            handler = self.get_handler(*args, **options)
            server = pywsgi.WSGIServer(
                (self.addr, int(self.port)),
                handler,
                handler_class=make_handler_class(),
                log=None,
            )
            server.start()  # binds now, so that errors show here
        except OSError as exc:
            self.stderr.write(f"Error: {bind_error_text(exc)}")
            os._exit(1)  # as Django: sys.exit does not end the process from a thread
        self.on_bind(server.server_port)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            if options.get("shutdown_message"):
                self.stdout.write(options["shutdown_message"])
            sys.exit(0)

    def on_bind(self, server_port: int) -> None:
        parent_on_bind = getattr(super(), "on_bind", None)
        if parent_on_bind is not None:
            parent_on_bind(server_port)
        else:  # Django 4.2 prints its banner in inner_run, which this command replaces
            self.stdout.write(
                f"Django version {self.get_version()}, using settings "
                f"{settings.SETTINGS_MODULE!r}\nStarting development server at "
                f"{self.protocol}://{self.display_addr}:{server_port}/\n"
                "Quit the server with CONTROL-C."
            )
        from ws4redis_gevent.settings import load

        self.stdout.write(
            f"Websockets are served at ws://{self.display_addr}:{server_port}"
            f"{load().websocket_url} (gevent)."
        )

    @property
    def display_addr(self) -> str:
        if self._raw_ipv6:
            return f"[{self.addr}]"
        return "0.0.0.0" if self.addr == "0" else self.addr


def bind_error_text(exc: OSError) -> str:
    """Django's helpful messages for errors when binding the port."""
    errors = {
        errno.EACCES: "You don't have permission to access that port.",
        errno.EADDRINUSE: "That port is already in use.",
        errno.EADDRNOTAVAIL: "That IP address can't be assigned to.",
    }
    return errors.get(exc.errno or 0, str(exc))
