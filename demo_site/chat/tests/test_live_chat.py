"""The chat's websockets, end to end: the demo served live (LiveWebsocketTestCase), a real
redis-server (embedded), real websocket clients.

Runs with ``python manage.py test chat`` and with pytest (pytest-django).
"""

import urllib.request

from django.contrib.auth.models import Group, User

from ws4redis_gevent.publisher import RedisPublisher
from ws4redis_gevent.testing.django import LiveWebsocketTestCase

JSON = {"HTTP_ACCEPT": "application/json"}


class LiveChatTests(LiveWebsocketTestCase):
    def setUp(self):
        super().setUp()
        # A TransactionTestCase empties the tables after each test (the migration's demo users
        # are there for the first one only): the users are made here.
        self.alice = User.objects.get_or_create(username="alice")[0]
        self.bob = User.objects.get_or_create(username="bob")[0]
        self.alice.groups.add(Group.objects.get_or_create(name="hikers")[0])

    def test_a_message_to_a_user_arrives_on_their_websocket(self):
        self.client.force_login(self.bob)
        bob = self.connect("/ws/chat?subscribe-user")
        self.client.force_login(self.alice)
        response = self.client.post(
            "/send/", {"audience": "user", "to": "bob", "text": "hello"}, **JSON
        )
        self.assertEqual(response.json()["receivers"], 1)  # bob's websocket; alice has none
        message = bob.recv_json()
        self.assertEqual((message["from"], message["text"]), ("alice", "hello"))

    def test_stored_message_is_received_on_connect(self):
        RedisPublisher(facility="chat", groups=["hikers"]).publish_message("earlier")
        self.client.force_login(self.alice)
        alice = self.connect("/ws/chat?subscribe-group")
        self.assertEqual(alice.recv(), "earlier")

    def test_anonymous_visitors_only_listen(self):
        """chat.channels.allowed_channels drops publish-broadcast for anonymous visitors."""
        visitor = self.connect("/ws/chat?subscribe-broadcast&publish-broadcast&echo")
        visitor.send("spam")
        visitor.assert_no_message(within=0.3)
        self.client.force_login(self.alice)
        member = self.connect("/ws/chat?subscribe-broadcast&publish-broadcast&echo")
        member.send("hi all")
        self.assertEqual(member.recv(), "hi all")
        self.assertEqual(visitor.recv(), "hi all")

    def test_heartbeat_is_echoed(self):
        websocket = self.connect("/ws/chat?subscribe-broadcast")
        websocket.send_heartbeat()
        websocket.recv_heartbeat()

    def test_the_page_and_its_script_are_served(self):
        """The chat page, and the JS client it loads, as a browser would fetch them."""
        with urllib.request.urlopen(self.live_server_url + "/", timeout=5) as page:
            self.assertIn(b"ws4redis", page.read())
        script = self.live_server_url + "/static/ws4redis_gevent/ws4redis.js"
        with urllib.request.urlopen(script, timeout=5) as response:
            self.assertIn(b"WS4Redis", response.read())

    def test_closing(self):
        websocket = self.connect("/ws/chat?subscribe-broadcast")
        self.assertEqual(websocket.close().code, 1000)
