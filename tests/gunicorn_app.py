"""The WSGI app that tests/test_gunicorn.py serves with gunicorn (options from the environment)."""

import json
import os

from serve import build_app

app = build_app(json.loads(os.environ.get("WS4REDIS_TEST_OPTIONS", "{}")))
