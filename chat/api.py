"""The HTTP API at /api/v1/ (docs/api.md): JSON for programs, with a personal token (`Authorization: Bearer`).

Entry points like the pages and the sockets: each route parses, asks chat.services or chat.selectors, and answers.
The rules are theirs (who may read which conversation, length, flood, read-only rooms); so a message posted here
reaches open pages live like any other. Every refusal is {"error": "<sentence>"} with its status.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import wraps

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed, JsonResponse
from ninja import NinjaAPI, Query, Status
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.security import HttpBearer

from accounts import tokens
from accounts.models import ApiToken
from chat import errors, http_limits, selectors, services
from chat.api_schemas import (
    ConversationsOut,
    ErrorOut,
    MessageIn,
    MessageOut,
    MessagesOut,
    message_out,
)
from chat.models import Room

logger = logging.getLogger(__name__)

NO_TOKEN = "Send an API token in the Authorization header: Bearer <token> (make one at /accounts/tokens/)."
BAD_TOKEN = "That API token is unknown or revoked, or its account is inactive."


class BearerToken(HttpBearer):
    """A personal token (accounts.tokens), looked up by its hash; the request then acts as the token's user."""

    def authenticate(self, request: HttpRequest, token: str) -> ApiToken:
        api_token = tokens.api_token_authenticate(token=token)
        if api_token is None:
            raise AuthenticationError(message=BAD_TOKEN)
        request.user = api_token.user
        return api_token


api = NinjaAPI(
    title="Chat API",
    version="1",
    description="The chat's conversations and messages, with a personal API token (docs/api.md).",
    urls_namespace="api",
    auth=BearerToken(),
    # Only the document: a docs page would load its scripts from a CDN, which the Content-Security-Policy forbids.
    docs_url=None,
    openapi_url="/openapi.json",
)

# A page of messages: `after` an id (none: the newest), `limit` of them.
AFTER = Query(None, ge=0, description="Only the messages after this id, oldest first (none: the newest).")
LIMIT = Query(50, ge=1, le=100, description="How many messages, 1 to 100.")
READ_ERRORS = {400: ErrorOut, 401: ErrorOut, 404: ErrorOut}
WRITE_ERRORS = {**READ_ERRORS, 403: ErrorOut, 413: ErrorOut, 429: ErrorOut}


# --- Routes --------------------------------------------------------------------------------------------------------


@api.get("/rooms", response={200: ConversationsOut, 401: ErrorOut}, summary="The conversations of one's sidebar")
def rooms_list(request: HttpRequest) -> dict[str, object]:
    """The rooms one has joined and the people one talks to, each with its unread messages."""
    sidebar = selectors.sidebar(user=request.user)
    return {
        "rooms": [{"name": room.name, "kind": room.kind, "unread": room.unread_count} for room in sidebar.rooms],
        "dms": [{"username": room.peer.username, "unread": room.unread_count} for room in sidebar.people],
    }


@api.get("/rooms/{room}/messages", response={200: MessagesOut, **READ_ERRORS}, summary="A room's messages")
def room_messages(request: HttpRequest, room: str, after: int | None = AFTER, limit: int = LIMIT) -> dict:
    """Without `after`, the newest `limit` messages; with it, the first `limit` after that id; oldest first."""
    conversation = services.rooms.conversation_open(user=request.user, room_name=room, create=False)
    return messages_page(conversation, after=after, limit=limit)


@api.post(
    "/rooms/{room}/messages", response={200: MessageOut, 201: MessageOut, **WRITE_ERRORS}, summary="Post to a room"
)
def room_message_post(request: HttpRequest, room: str, payload: MessageIn) -> HttpResponse | Status:
    """Post a message to a room one may read; it reaches the room's open pages live."""
    refusal = http_limits.refused(request, "api")
    if refusal is not None:
        return refusal
    conversation = services.rooms.conversation_open(user=request.user, room_name=room, create=False)
    return message_post(request, conversation, payload)


@api.get("/dm/{username}/messages", response={200: MessagesOut, **READ_ERRORS}, summary="A direct conversation")
def direct_messages(request: HttpRequest, username: str, after: int | None = AFTER, limit: int = LIMIT) -> dict:
    """The messages of one's conversation with that person, as for a room."""
    return messages_page(direct_open(request, username), after=after, limit=limit)


@api.post(
    "/dm/{username}/messages", response={200: MessageOut, 201: MessageOut, **WRITE_ERRORS}, summary="Post to a person"
)
def direct_message_post(request: HttpRequest, username: str, payload: MessageIn) -> HttpResponse | Status:
    """Send a message to one's conversation with that person; it reaches both people's open pages live."""
    refusal = http_limits.refused(request, "api")
    if refusal is not None:
        return refusal
    return message_post(request, direct_open(request, username), payload)


def direct_open(request: HttpRequest, username: str) -> Room:
    """One's conversation with that person (unknown or inactive: 404; oneself: 400)."""
    if username.lower() == request.user.username.lower():
        raise HttpError(400, "You cannot have a direct conversation with yourself.")
    return services.rooms.conversation_open(user=request.user, username=username)


def messages_page(conversation: Room, *, after: int | None, limit: int) -> dict:
    messages = selectors.conversation_messages(room=conversation, after=after, limit=limit)
    return {"messages": [message_out(message, room=conversation) for message in messages]}


def message_post(request: HttpRequest, conversation: Room, payload: MessageIn) -> Status:
    """Through the same service as the page and the socket: parsing, length, flood, read-only, publish on commit.
    201 with the message; 200 with the one stored first when the same text comes again under its `key`."""
    message = services.messages.message_post(
        room=conversation, author=request.user, text=payload.text, thread=payload.thread, key=payload.key
    )
    status = 201
    if message is None and payload.key is not None:
        message, status = selectors.message_by_key(author=request.user, key=payload.key), 200
    if message is None:
        raise HttpError(400, 'A message needs some text: send {"text": "..."}.')
    # `/pm <username> <text>` lands in that conversation, as on the page: the message says where.
    return Status(status, message_out(message, room=message.room))


# --- Refusals: always {"error": "<sentence>"} ----------------------------------------------------------------------


def refusal(error: str, *, status: int, retry_after: float | None = None) -> HttpResponse:
    response = JsonResponse({"error": error}, status=status)
    if retry_after is not None:
        response["Retry-After"] = str(http_limits.retry_seconds(retry_after))
    return response


@api.exception_handler(errors.ChatError)
def chat_refused(request: HttpRequest, error: errors.ChatError) -> HttpResponse:
    """A rule of the chat said no: the same sentence the page would show, with the status that says why."""
    if isinstance(error, errors.NotFound):
        return refusal(str(error), status=404)
    if isinstance(error, errors.TooManyWrites):
        return refusal(str(error), status=429, retry_after=error.retry_after)
    if error.reason == "rate_limited":  # the message flood limit; its oldest message leaves the window within it
        window = settings.CHAT_RATE_LIMIT_SECONDS
        sentence = (
            f"Slow down: at most {settings.CHAT_RATE_LIMIT_MESSAGES} messages in {window:g} seconds. "
            f"Try again in {http_limits.retry_seconds(window)} seconds."
        )
        return refusal(sentence, status=429, retry_after=window)
    if error.reason == "room_read_only":
        return refusal(str(error), status=403)
    if isinstance(error, errors.DeliveryError | errors.StorageError):
        return refusal(str(error), status=503)
    if not isinstance(error, errors.InvalidRoomName):
        logger.info("api refused", extra={"reason": error.reason})
    return refusal(str(error), status=400)


@api.exception_handler(AuthenticationError)
def unauthenticated(request: HttpRequest, error: AuthenticationError) -> HttpResponse:
    response = refusal(BAD_TOKEN if error.message == BAD_TOKEN else NO_TOKEN, status=401)
    response["WWW-Authenticate"] = 'Bearer realm="api"'
    return response


@api.exception_handler(ValidationError)
def invalid(request: HttpRequest, error: ValidationError) -> HttpResponse:
    """A field missing or of the wrong type, or a query out of range: the first problem, as a sentence."""
    return refusal(validation_sentence(error.errors), status=400)


def validation_sentence(problems: list[dict]) -> str:
    if not problems:
        return "The request is not valid."
    problem = problems[0]
    where, *path = [str(part) for part in problem.get("loc", ())]
    if where == "body" and path:
        path = path[1:]  # the handler's argument name, not the client's
    field = ".".join(path)
    detail = str(problem.get("msg", "is not valid"))
    detail = detail[0].lower() + detail[1:]
    if where == "body" and not field:
        return f'The body must be a JSON object such as {{"text": "..."}}: {detail}.'
    return f'Invalid {"query parameter" if where == "query" else "field"} "{field}": {detail}.'


@api.exception_handler(HttpError)
def http_error(request: HttpRequest, error: HttpError) -> HttpResponse:
    if isinstance(error.__cause__, ValueError):  # ninja's parser: the body is not JSON
        return refusal('The body is not valid JSON: send {"text": "..."}.', status=400)
    return refusal(str(error.message), status=error.status_code)


@api.exception_handler(Http404)
def not_found(request: HttpRequest, error: Http404) -> HttpResponse:
    return refusal(str(error) or "There is no such thing.", status=404)


@api.exception_handler(RequestDataTooBig)
def too_large(request: HttpRequest, error: RequestDataTooBig) -> HttpResponse:
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    return refusal(f"The body is too large: at most {limit // 1024} KiB.", status=413)


@api.exception_handler(Exception)
def failed(request: HttpRequest, error: Exception) -> HttpResponse:
    logger.error("api request failed", exc_info=error, extra={"path": request.path})
    return refusal("Something went wrong on our side; nothing more is known. Please try again.", status=500)


def urls() -> tuple[list, str, str]:
    """The API's URL patterns, each answering a method it does not take with 405 in the API's shape too."""
    patterns, app_name, namespace = api.urls
    for pattern in patterns:
        pattern.callback = methods_refused_in_json(pattern.callback)
    return patterns, app_name, namespace


def methods_refused_in_json(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    @wraps(view)
    def answered(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
        response = view(request, *args, **kwargs)
        if isinstance(response, HttpResponseNotAllowed):
            allowed = response["Allow"]
            response = refusal(f"{request.method} is not allowed here; this URL takes {allowed}.", status=405)
            response["Allow"] = allowed
        return response

    return answered


def api_not_found(request: HttpRequest, path: str = "") -> HttpResponse:
    """Any other URL under /api/: a 404 in the API's own shape, not an HTML page."""
    return refusal("There is no such API endpoint: see /api/v1/openapi.json.", status=404)
