"""The chat page, and the view that publishes to a user, a group or the current session.

Messages are JSON objects ``{id, kind, from, to, text, at}``; ``kind`` is the audience
(broadcast, user, group, session), which tells the page where to show them. Broadcasts are
published by the browser through its websocket (``publish-broadcast``); the other three are
published here, with RedisPublisher, as a Django view would publish any event.
"""

import json
import uuid

import redis
from django.contrib.auth import get_user_model
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from ws4redis_gevent.publisher import RedisPublisher
from ws4redis_gevent.redis_store import SELF

FACILITY = "chat"
MAX_LENGTH = 500


def make_message(kind: str, sender: str, to: str, text: str) -> str:
    return json.dumps(
        {
            "id": uuid.uuid4().hex,
            "kind": kind,
            "from": sender,
            "to": to,
            "text": text,
            "at": timezone.now().isoformat(timespec="seconds"),
        }
    )


def chat(request):
    """The chat page: the room for everyone, the other audiences for signed-in users."""
    context = {}
    if request.user.is_authenticated:
        users = get_user_model().objects.exclude(pk=request.user.pk).order_by("username")
        context["others"] = users.values_list("username", flat=True)
        context["my_groups"] = request.user.groups.order_by("name").values_list("name", flat=True)
    return render(request, "chat/chat.html", context)


@require_POST
@login_required
def send(request):
    """Publish a message to a user (and the sender), to one of the sender's groups, or to the
    sender's own session. Answers JSON to fetch(), else redirects back to the chat page."""
    audience = request.POST.get("audience", "")
    to = request.POST.get("to", "")
    text = request.POST.get("text", "").strip()[:MAX_LENGTH]
    me = request.user.get_username()
    if not text:
        return answer(request, 400, error="the message is empty")
    if audience == "user":
        if not get_user_model().objects.filter(username=to).exists():
            return answer(request, 400, error=f"no user {to!r}")
        publisher = RedisPublisher(facility=FACILITY, users=sorted({to, me}))
    elif audience == "group":
        if not request.user.groups.filter(name=to).exists():
            return answer(request, 403, error=f"you are not a member of {to!r}")
        publisher = RedisPublisher(facility=FACILITY, groups=[to])
    elif audience == "session":
        to = "this session"
        publisher = RedisPublisher(facility=FACILITY, sessions=[SELF], request=request)
    else:
        return answer(request, 400, error="audience must be user, group or session")
    try:
        receivers = publisher.publish_message(make_message(audience, me, to, text))
    except redis.RedisError as exc:
        return answer(request, 503, error=f"Redis is unavailable: {exc}")
    return answer(request, 200, receivers=receivers, channels=publisher.channels)


def answer(request, status, **data):
    if "application/json" in request.headers.get("Accept", ""):
        return JsonResponse(data, status=status)
    if status != 200:
        return HttpResponse(f"{data['error']}\n", status=status, content_type="text/plain")
    return redirect("chat")


class LoginView(auth_views.LoginView):
    """Django's login view, with a sign-in button for each demo user (password 'demo')."""

    template_name = "chat/login.html"
    redirect_authenticated_user = True

    def get_context_data(self, **kwargs):
        users = get_user_model().objects.order_by("username").prefetch_related("groups")
        return super().get_context_data(demo_users=users, **kwargs)
