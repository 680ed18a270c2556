"""WSGI entry point, with websockets: ``gunicorn -k ws4redis_gevent.gunicorn.GeventWebSocketWorker
demo_site.wsgi`` (from demo_site/, with REDIS_URL set). ``manage.py runserver`` uses it too."""

import os

from django.core.wsgi import get_wsgi_application

from ws4redis_gevent import WebsocketMiddleware

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo_site.settings")

application = WebsocketMiddleware(get_wsgi_application())
