"""The same tools as pytest fixtures (the ws4redis-gevent plugin, with pytest-django)."""

import pytest

from ws4redis_gevent.publisher import RedisPublisher

pytestmark = pytest.mark.django_db


def test_send_view_publishes(client, django_user_model, ws4redis_capture):
    client.force_login(django_user_model.objects.get(username="carol"))
    client.post("/send/", {"audience": "group", "to": "readers", "text": "new book"})
    [message] = ws4redis_capture.filter(group="readers")
    assert message.json()["text"] == "new book"
    assert message.channel == "demo:group:readers:chat"


def test_user_websocket_receives(client, django_user_model, ws4redis_connect):
    carol = django_user_model.objects.create_user("carol-live")
    client.force_login(carol)
    websocket = ws4redis_connect("/ws/chat?subscribe-user", cookies=client.cookies)
    RedisPublisher(facility="chat", users=["carol-live"]).publish_message("ping")
    assert websocket.recv() == "ping"
