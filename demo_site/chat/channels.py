"""WS4REDIS_ALLOWED_CHANNELS of the demo: what each websocket may subscribe and publish to."""

ANONYMOUS_FLAGS = frozenset({"subscribe-broadcast"})


def allowed_channels(request, channels):
    """Signed-in users get the flags they ask for; anonymous visitors may only listen to the room.

    Runs for each websocket before the upgrade, on the session only (no database queries).
    """
    if request.user.is_authenticated:
        return channels
    return [flag for flag in channels if flag in ANONYMOUS_FLAGS]
