"""The send view publishes to the right audience: unit tests with no Redis (PublishCaptureMixin).

Runs with ``python manage.py test chat`` and with pytest (pytest-django).
"""

from django.contrib.auth import get_user_model
from django.test import TestCase

from ws4redis_gevent.testing.django import PublishCaptureMixin

JSON = {"HTTP_ACCEPT": "application/json"}


class SendViewTests(PublishCaptureMixin, TestCase):
    def setUp(self):
        super().setUp()
        self.client.force_login(get_user_model().objects.get(username="alice"))

    def test_to_a_user_reaches_them_and_the_sender(self):
        data = {"audience": "user", "to": "bob", "text": "hi"}
        response = self.client.post("/send/", data, **JSON)
        self.assertEqual(response.status_code, 200)
        self.assertEqual(self.published.channels, ["demo:user:alice:chat", "demo:user:bob:chat"])
        message = self.published.json(user="bob")[0]
        self.assertEqual(
            (message["kind"], message["from"], message["text"]), ("user", "alice", "hi")
        )
        self.assertEqual(self.published.messages[0].type, "text")
        # Stored for an hour (WS4REDIS_EXPIRE): bob sees it when he opens the chat later.
        self.assertEqual(self.published.messages[0].expire, 3600)
        self.assertIn(b'"text": "hi"', self.published.stored("demo:user:bob:chat"))

    def test_to_a_group_of_the_sender_only(self):
        response = self.client.post("/send/", {"audience": "group", "to": "readers", "text": "x"})
        self.assertEqual(response.status_code, 403)
        self.assertEqual(self.published.messages, [])
        self.client.post("/send/", {"audience": "group", "to": "hikers", "text": "up!"})
        self.assertEqual(self.published.texts(group="hikers")[0].count("up!"), 1)

    def test_to_the_session(self):
        self.client.post("/send/", {"audience": "session", "text": "note"})
        [message] = self.published.messages
        self.assertEqual(message.name, self.client.session.session_key)
        self.assertEqual(message.json()["to"], "this session")
