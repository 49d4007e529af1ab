from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.conf import settings
from django.contrib import messages as notices
from django.contrib.auth.decorators import login_required
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseForbidden,
)
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.cache import patch_vary_headers
from django.utils.http import content_disposition_header
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.models import User
from chat import attachments, errors, fragments, http_limits, selectors, services
from chat.http_limits import write_limited
from chat.models import Attachment, Membership, Message, Room


@require_GET
@login_required
def room_directory(request: HttpRequest) -> HttpResponse:
    """The public rooms, 50 a page (`?page=`, `?q=` filters by name); `?name=` opens (or creates) a room."""
    name = request.GET.get("name")
    query = request.GET.get("q", "").strip()[:50]
    context = {
        "rooms": selectors.room_directory(user=request.user, query=query, page=request.GET.get("page", 1)),
        "query": query,
        "sidebar": selectors.sidebar(user=request.user),
    }
    if name is not None:
        name = name.strip()
        try:
            services.rooms.room_name_validate(name)
        except errors.InvalidRoomName as error:
            return render(request, "chat/directory.html", {**context, "name": name, "error": str(error)}, status=400)
        return redirect("chat:room", room_name=name)
    return render(request, "chat/directory.html", context)


def conversation_view(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Pass the view the conversation its URL names, for this reader: a room (created when new) by `room_name`,
    or the direct conversation with `username`. A room name that cannot be gets the clear 400 page; a conversation
    the reader may not read is a 404, as if it did not exist (chat.services.conversation_open decides). Opening a
    new room's name creates the room: that counts against the reader's limit of new rooms."""

    @wraps(view)
    def with_conversation(
        request: HttpRequest, room_name: str | None = None, username: str | None = None, **kwargs: object
    ) -> HttpResponse:
        try:
            room = services.rooms.conversation_open(user=request.user, room_name=room_name, username=username)
        except errors.InvalidRoomName as error:
            context = {"name": room_name, "error": str(error)}
            return render(request, "chat/room_invalid.html", context, status=400)
        except errors.NotFound as error:
            raise Http404(str(error)) from error
        except errors.TooManyWrites as error:
            return http_limits.too_many(request, error.kind, error.retry_after)
        return view(request, room, **kwargs)

    return with_conversation


@require_GET
@login_required
@conversation_view
def room_detail(request: HttpRequest, room: Room) -> HttpResponse:
    """A conversation's page: its recent log, who is online, the message box. Opening a room joins it."""
    return room_page(request, room)


def room_page(
    request: HttpRequest, room: Room, *, error: str = "", status: int = 200, parent: Message | None = None
) -> HttpResponse:
    """The conversation's page, also with an error in #chat-error (an upload posted without htmx); with `parent`,
    the page of that message's thread, beside the log (where the thread's first message shows only in the thread)."""
    context = {
        **fragments.limits(),
        "room": room,
        "error": error,
        "online_users": selectors.room_online_users(room=room),
        "sidebar": selectors.sidebar(user=request.user, current=room, thread=parent),
        "can_manage": can_manage(room, request.user),
    }
    if parent is not None:
        context.update(parent=parent, replies=selectors.thread_replies(parent=parent), open_thread_id=parent.pk)
    messages = selectors.message_list_recent(room=room, user=request.user)
    # The socket marks the room read when it connects; the page shows what is new until then.
    last_read_id = selectors.room_last_read_id(room=room, user=request.user)
    if last_read_id is None:  # a room opened for the first time (or again after leaving it) is joined
        services.memberships.room_member_join(room=room, user=request.user)
    # Not "messages": that is django.contrib.messages' notices in base.html.
    context["chat_messages"] = messages
    context["divider_id"] = selectors.unread_divider_id(
        messages=messages, last_read_id=last_read_id, user=request.user
    )
    template = "chat/room.html"
    if request.htmx.boosted and not request.htmx.history_restore_request:
        template += "#room-section"  # a thread's link or its "Back": the page keeps its head, sidebar and style
    response = render(request, template, context, status=status)
    patch_vary_headers(response, ["HX-Request"])
    return response


def can_manage(room: Room, user: User) -> bool:
    try:
        services.rooms.room_manage_check(room=room, by=user)
    except errors.ChatError:
        return False
    return True


@require_GET
@login_required
@conversation_view
def room_history(request: HttpRequest, room: Room) -> HttpResponse:
    """The page of messages before `?before=<id>`, loaded as the reader scrolls up."""
    before = request.GET.get("before", "")
    if not before.isdigit():
        return HttpResponseBadRequest("?before= must be a message id.")
    messages = selectors.message_list_recent(room=room, user=request.user, before=int(before))
    return HttpResponse(fragments.older_messages(room=room, messages=messages))


@require_GET
@login_required
@conversation_view
def room_search(request: HttpRequest, room: Room) -> HttpResponse:
    """The conversation's messages matching the words of `?q=`."""
    query = request.GET.get("q", "").strip()[:200]
    results = selectors.message_search(room=room, query=query) if query else []
    return render(request, "chat/search.html", {"room": room, "query": query, "results": results})


@require_GET
@login_required
@conversation_view
def message_in_context(request: HttpRequest, room: Room, message_id: int) -> HttpResponse:
    """A conversation's message in its place in the history, with the messages around it; a reply in its thread."""
    parent_id = selectors.reply_parent_id(room=room, message_id=message_id)
    if parent_id is not None:
        return redirect(f"{room.url('thread', parent_id)}#message-{message_id}")
    messages = selectors.message_context(room=room, message_id=message_id)
    if not any(m.pk == message_id for m in messages):
        raise Http404("No such message in this conversation.")
    context = {"room": room, "chat_messages": messages, "target": message_id}
    return render(request, "chat/message_context.html", context)


@require_POST
@login_required
@write_limited("room_leave")
@conversation_view
def room_leave(request: HttpRequest, room: Room) -> HttpResponse:
    """Take the room off one's sidebar (it stays in the directory; opening it joins it again)."""
    try:
        services.memberships.room_leave(room=room, user=request.user)
    except errors.NotFound as error:
        raise Http404(str(error)) from error
    notices.info(request, f"You left {room.title}.")
    return redirect("chat:directory")


@require_http_methods(["GET", "POST"])
@login_required
@write_limited("room_settings")
@conversation_view
def room_settings(request: HttpRequest, room: Room) -> HttpResponse:
    """Who is in the room and whether it is private; its creator (or staff) changes them (`private=on`)."""
    if room.is_direct:
        raise Http404("There is no such room.")
    if request.method == "POST":
        try:
            services.memberships.room_privacy_set(
                room=room, private=request.POST.get("private") == "on", by=request.user
            )
        except errors.ChatError as error:
            return room_settings_page(request, room, error=str(error), status=403)
        if room.is_private:
            stay = len(selectors.room_member_names(room=room))
            members = "its one member stays" if stay == 1 else f"its {stay} members stay"
            notices.success(request, f"{room.title} is now private: {members} in it, and only members see it.")
        else:
            notices.success(request, f"{room.title} is now public.")
        return redirect("chat:settings", room_name=room.name)
    return room_settings_page(request, room)


# What the notifications page says once a level is saved.
LEVEL_SAVED = {
    Membership.Level.ALL: "every message notifies you",
    Membership.Level.MENTIONS: "only messages that mention you notify you",
    Membership.Level.NOTHING: "muted, nothing in it notifies you",
}


@require_http_methods(["GET", "POST"])
@login_required
@write_limited("room_settings")
@conversation_view
def notification_level(request: HttpRequest, room: Room) -> HttpResponse:
    """What of the conversation notifies the reader (`level=all|mentions|nothing`): their title's count and emails."""
    if request.method == "POST":
        try:
            membership = services.memberships.notification_level_set(
                room=room, user=request.user, level=request.POST.get("level", "")
            )
        except errors.ChatError as error:
            return notification_level_page(request, room, error=str(error), status=400)
        notices.success(request, f"{room.title}: {LEVEL_SAVED[membership.level]}.")
        return redirect(room.url("notifications"))
    return notification_level_page(request, room)


def notification_level_page(request: HttpRequest, room: Room, *, error: str = "", status: int = 200) -> HttpResponse:
    level = selectors.notification_level(room=room, user=request.user)
    context = {
        "room": room,
        "level": level,
        "levels": Membership.Level.choices,
        "error": error,
        "sidebar": selectors.sidebar(user=request.user, current=room),
    }
    return render(request, "chat/notification_level.html", context, status=status)


def room_settings_page(request: HttpRequest, room: Room, *, error: str = "", status: int = 200) -> HttpResponse:
    context = {
        "room": room,
        "members": selectors.room_member_names(room=room),
        "creator": room.created_by.username if room.created_by else None,
        "can_manage": can_manage(room, request.user),
        "error": error,
        "username": request.POST.get("username", ""),
        "sidebar": selectors.sidebar(user=request.user, current=room),
    }
    return render(request, "chat/room_settings.html", context, status=status)


@require_POST
@login_required
@write_limited("room_members")
@conversation_view
def room_member_add(request: HttpRequest, room: Room) -> HttpResponse:
    """Add a person to the room by `username` (its creator or staff): a private room's way in."""
    return room_members_change(request, room, services.memberships.room_member_add, "is now a member of")


@require_POST
@login_required
@write_limited("room_members")
@conversation_view
def room_member_remove(request: HttpRequest, room: Room) -> HttpResponse:
    """Take a person (`username`) out of the room (its creator or staff)."""
    return room_members_change(request, room, services.memberships.room_member_remove, "is no longer a member of")


def room_members_change(request: HttpRequest, room: Room, change: Callable[..., User], done: str) -> HttpResponse:
    """Add or remove the posted `username`; back to the settings page, or that page with the sentence."""
    if room.is_direct:
        raise Http404("There is no such room.")
    try:
        member = change(room=room, username=request.POST.get("username", ""), by=request.user)
    except errors.ChatError as error:
        status = 403 if error.reason == "not_creator" else 400
        return room_settings_page(request, room, error=str(error), status=status)
    notices.success(request, f"{member.username} {done} {room.title}.")
    return redirect("chat:settings", room_name=room.name)


def message_answer(request: HttpRequest, message: Message) -> HttpResponse:
    """The message as it now is, for the page of the person who changed it (whose reader its links name)."""
    room = selectors.room_as_seen_by(room=message.room, user=request.user)
    return HttpResponse(room.for_reader(fragments.message_replaced(message=message)))


@require_http_methods(["GET", "POST"])
@login_required
@write_limited("edits")
def message_edit(request: HttpRequest, message_id: int) -> HttpResponse:
    """The author's inline edit form (GET), or the edit itself (POST); `?cancel` shows the message again."""
    message = get_object_or_404(selectors.messages_visible_to(user=request.user), pk=message_id)
    if request.method == "GET" and "cancel" in request.GET:
        return message_answer(request, message)
    try:
        if request.method == "POST":
            services.messages.message_edit(message=message, by=request.user, body=request.POST.get("body", ""))
            if not request.htmx:  # posted before htmx took the form over: back to the room, edit saved
                return redirect(selectors.room_as_seen_by(room=message.room, user=request.user))
            return message_answer(request, message)
        services.messages.message_own_check(message=message, by=request.user)
    except errors.ChatError as error:
        if request.method == "GET":  # too late, or not theirs: said in #chat-error, the message stays as it is
            return http_limits.error_response(request, str(error), status=403)
        return HttpResponse(fragments.message_edit_form(request=request, message=message, error=str(error)))
    return HttpResponse(fragments.message_edit_form(request=request, message=message))


@require_POST
@login_required
@write_limited("deletes")
def message_retract(request: HttpRequest, message_id: int) -> HttpResponse:
    """Delete one's own message, leaving a placeholder in its place."""
    message = get_object_or_404(selectors.messages_visible_to(user=request.user), pk=message_id)
    try:
        services.messages.message_retract(message=message, by=request.user)
    except errors.ChatError as error:
        return http_limits.error_response(request, str(error), status=403)
    return message_answer(request, message)


@require_GET
@login_required
@conversation_view
def private_message_form(request: HttpRequest, room: Room) -> HttpResponse:
    """The message form prefilled with `/pm <username> `, swapped in when a name is clicked."""
    if not request.htmx:
        return redirect(room)
    recipient = selectors.user_get_by_username(username=request.GET.get("to", ""))
    draft = f"/pm {recipient.username} " if recipient else ""
    return HttpResponse(fragments.message_form(room=room, draft=draft, oob=False))


@require_POST
@login_required
@write_limited("reactions")
def reaction_toggle(request: HttpRequest, message_id: int) -> HttpResponse:
    """Give or take back one's reaction (`emoji`) to a message one may read; the page gets the new counts."""
    message = get_object_or_404(selectors.messages_visible_to(user=request.user), pk=message_id)
    try:
        services.reactions.reaction_toggle(message=message, user=request.user, emoji=request.POST.get("emoji", ""))
    except errors.ChatError as error:
        if error.reason == "bad_emoji":
            return HttpResponseBadRequest(str(error))
        return HttpResponseForbidden(str(error))
    if not request.htmx:
        return redirect(selectors.room_as_seen_by(room=message.room, user=request.user))
    # Swapped out of band (the button says hx-swap="none"); the socket brings the same to the other pages.
    return HttpResponse(fragments.reactions(message=message))


# Exempt here, checked below: the size limit's handler must be in place before anything reads the body, and the
# CSRF middleware would read it first. The upload counts against the user's limit before the body is parsed.
@csrf_exempt
@require_POST
@login_required
@write_limited("uploads")
def attachment_upload(request: HttpRequest, **conversation: str) -> HttpResponse:
    """Share the posted `file` (and `caption`) in the conversation as a message; an error shows in #chat-error."""
    limiter = attachments.SizeLimitedUploadHandler(request, limit=settings.CHAT_ATTACHMENT_MAX_BYTES)
    request.upload_handlers.insert(0, limiter)
    try:
        request.POST  # noqa: B018  parsed here, through the limiter; Django refuses a second file or 64 KiB of fields
    except (RequestDataTooBig, TooManyFilesSent, TooManyFieldsSent):
        return http_limits.error_response(request, attachments.too_large_sentence(), status=413)
    return _attachment_upload(request, **conversation, limiter=limiter)


@csrf_protect
@conversation_view
def _attachment_upload(
    request: HttpRequest, room: Room, limiter: attachments.SizeLimitedUploadHandler
) -> HttpResponse:
    upload = request.FILES.get("file")  # reads the body, through the limiter
    thread = request.POST.get("thread") or None  # a reply's: the thread's form names its first message
    try:
        if limiter.too_large:
            services.attachments.attachment_size_check(size=settings.CHAT_ATTACHMENT_MAX_BYTES + 1)
        message = services.attachments.attachment_create(
            room=room, author=request.user, upload=upload, caption=request.POST.get("caption", ""), thread=thread
        )
    except errors.ChatError as error:
        if not request.htmx:  # the plain form: the page again, with the sentence
            parent = None
            if thread and thread.isdigit() and len(thread) <= 18:
                parent = selectors.thread_parent(room=room, message_id=int(thread))
            if parent is not None and parent.parent_id is not None:
                parent = None
            return room_page(request, room, error=str(error), status=400, parent=parent)
        return HttpResponse(fragments.chat_error(error=str(error)))
    if not request.htmx:
        return redirect(room.url("thread", message.parent_id) if message.parent_id else room)
    # The message itself arrives over the socket, like every other; here the error is cleared and the form reset.
    parent = message.parent
    return HttpResponse(fragments.chat_error() + fragments.upload_form(request=request, room=room, thread=parent))


@require_GET
def attachment_file(request: HttpRequest, attachment_id: int, thumbnail: bool = False) -> HttpResponse:
    """An attachment's bytes (or its thumbnail) for someone who may read its message; 404 for anyone else."""
    attachment = selectors.attachment_get_visible(user=request.user, attachment_id=attachment_id)
    if attachment is None or (thumbnail and not attachment.thumbnail):
        raise Http404("No such file.")
    return attachment_response(attachment, thumbnail=thumbnail)


def attachment_response(attachment: Attachment, *, thumbnail: bool = False) -> HttpResponse:
    """Only the four image types are shown inline; anything else is a download, so SVG or HTML never renders here."""
    stored = attachment.thumbnail if thumbnail else attachment.file
    if thumbnail:
        content_type = "image/png" if stored.name.endswith(".png") else "image/jpeg"
    else:
        content_type = attachment.content_type if attachment.is_image else attachments.OTHER_FILE
    inline = thumbnail or attachment.is_image
    accel = settings.CHAT_ATTACHMENT_ACCEL_REDIRECT
    if accel:
        # nginx sends the bytes from its internal location; the headers set here go with them.
        response = HttpResponse(content_type=content_type)
        response["X-Accel-Redirect"] = accel.rstrip("/") + "/" + stored.name
        response["Content-Disposition"] = content_disposition_header(not inline, attachment.name)
    else:
        response = FileResponse(stored.open("rb"), as_attachment=not inline, filename=attachment.name)
        response["Content-Type"] = content_type
    response["X-Content-Type-Options"] = "nosniff"
    # Private to the reader: no shared cache keeps a file that only some people may read.
    response["Cache-Control"] = "private, max-age=3600"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response
