"""WS4REDIS_ALLOWED_CHANNELS callbacks, copied from the ws4redis documentation unchanged."""

from django.core.exceptions import PermissionDenied


def get_allowed_channels(request, channels):
    return set(channels).intersection(['subscribe-broadcast', 'subscribe-group'])


def deny_anonymous(request, channels):
    # The doc's second example, in the Django < 2.0 style it was written in.
    if not request.user.is_authenticated():
        raise PermissionDenied('Not allowed to subscribe nor to publish on the Websocket!')
