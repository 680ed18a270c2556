"""Views that use ws4redis_gevent the way a Django site does: SELF resolved from the request."""

from __future__ import annotations

from django.contrib.auth import authenticate, login
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden, JsonResponse
from django.views.decorators.http import require_POST

from ws4redis_gevent.publisher import RedisPublisher
from ws4redis_gevent.redis_store import SELF

from . import querylog


@require_POST
def login_view(request: HttpRequest) -> HttpResponse:
    """POST username, password: log in (the app stores the identity in the session)."""
    user = authenticate(
        request, username=request.POST.get("username"), password=request.POST.get("password")
    )
    if user is None:
        return HttpResponseForbidden("wrong username or password")
    login(request, user)
    return HttpResponse(request.session.session_key, content_type="text/plain")


@require_POST
def publish_view(request: HttpRequest, facility: str) -> HttpResponse:
    """POST message and ``to`` (comma separated: user, group, session, broadcast).

    ``user``, ``group`` and ``session`` publish to SELF: the current user, their groups, the
    current session. Answers the channels published on, as JSON.
    """
    to = set(request.POST.get("to", "").split(","))
    publisher = RedisPublisher(
        facility=facility,
        broadcast="broadcast" in to,
        users=[SELF] if "user" in to else [],
        groups=[SELF] if "group" in to else [],
        sessions=[SELF] if "session" in to else [],
        request=request,
    )
    publisher.publish_message(request.POST["message"])
    return JsonResponse({"channels": publisher.channels})


def fetch_view(request: HttpRequest, facility: str) -> HttpResponse:
    """GET ?audience=...: fetch_message for this request; 204 when there is none."""
    message = RedisPublisher().fetch_message(request, facility, request.GET.get("audience", "any"))
    if message is None:
        return HttpResponse(status=204)
    return HttpResponse(message, content_type="text/plain; charset=utf-8")


def queries_view(request: HttpRequest) -> HttpResponse:
    """GET: the SQL this process ran since the last POST; POST: clear the log."""
    if request.method == "POST":
        querylog.statements.clear()
        return HttpResponse(status=204)
    return JsonResponse({"statements": list(querylog.statements)})
