from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "chat"
    verbose_name = "ws4redis-gevent demo chat"
