"""A small Django project for the integration tests: login, publishing views, fetch_message.

Served by ``tests/serve.py`` when its options contain ``"django": true``; the test process
uses the same settings (``tests.django_project.settings``) so both share one sqlite database.
"""
