"""The test project as an app: it records the SQL each server process runs (see querylog)."""

from __future__ import annotations

from django.apps import AppConfig


class TestProjectConfig(AppConfig):
    name = "tests.django_project"
    label = "ws4redis_test_project"

    def ready(self) -> None:
        from . import querylog

        querylog.install()
