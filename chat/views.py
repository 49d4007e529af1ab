from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseForbidden,
)
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.http import content_disposition_header
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from chat import attachments, fragments, selectors, services
from chat.models import Attachment, Room


@require_GET
@login_required
def room_directory(request: HttpRequest) -> HttpResponse:
    """Every room with its online count; `?name=` opens (or creates) a room."""
    name = request.GET.get("name")
    if name is not None:
        name = name.strip()
        try:
            services.room_name_validate(name)
        except services.InvalidRoomName as error:
            return render(
                request,
                "chat/directory.html",
                {"rooms": selectors.room_directory(user=request.user), "name": name, "error": str(error)},
                status=400,
            )
        return redirect("chat:room", room_name=name)
    return render(request, "chat/directory.html", {"rooms": selectors.room_directory(user=request.user)})


def room_view(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Pass the view the room the URL names (created when new), or answer the clear 400 page."""

    @wraps(view)
    def with_room(request: HttpRequest, room_name: str, **kwargs: object) -> HttpResponse:
        try:
            room = services.room_get_or_create(name=room_name)
        except services.InvalidRoomName as error:
            context = {"name": room_name, "error": str(error)}
            return render(request, "chat/room_invalid.html", context, status=400)
        return view(request, room, **kwargs)

    return with_room


@require_GET
@login_required
@room_view
def room_detail(request: HttpRequest, room: Room) -> HttpResponse:
    """The room page: its recent log, who is online, the message box."""
    return room_page(request, room)


def room_page(request: HttpRequest, room: Room, *, error: str = "", status: int = 200) -> HttpResponse:
    """The room page, also with an error in #chat-error (an upload posted without htmx)."""
    messages = selectors.message_list_recent(room=room, user=request.user)
    # The socket marks the room read when it connects; the page shows what is new until then.
    last_read_id = selectors.room_last_read_id(room=room, user=request.user)
    context = {
        **fragments.limits(),
        "room": room,
        "error": error,
        # Not "messages": that is django.contrib.messages' notices in base.html.
        "chat_messages": messages,
        "divider_id": selectors.unread_divider_id(messages=messages, last_read_id=last_read_id, user=request.user),
        "online_users": selectors.room_online_users(room=room),
    }
    return render(request, "chat/room.html", context, status=status)


@require_GET
@login_required
@room_view
def room_history(request: HttpRequest, room: Room) -> HttpResponse:
    """The page of messages before `?before=<id>`, loaded as the reader scrolls up."""
    before = request.GET.get("before", "")
    if not before.isdigit():
        return HttpResponseBadRequest("?before= must be a message id.")
    messages = selectors.message_list_recent(room=room, user=request.user, before=int(before))
    return HttpResponse(fragments.older_messages(room=room, messages=messages))


@require_GET
@login_required
@room_view
def room_search(request: HttpRequest, room: Room) -> HttpResponse:
    """The room's messages matching the words of `?q=`."""
    query = request.GET.get("q", "").strip()[:200]
    results = selectors.message_search(room=room, query=query) if query else []
    return render(request, "chat/search.html", {"room": room, "query": query, "results": results})


@require_GET
@login_required
@room_view
def message_in_context(request: HttpRequest, room: Room, message_id: int) -> HttpResponse:
    """A room message in its place in the history, with the messages around it."""
    messages = selectors.message_context(room=room, message_id=message_id)
    if not any(m.pk == message_id for m in messages):
        raise Http404("No such message in this room.")
    context = {"room": room, "chat_messages": messages, "target": message_id}
    return render(request, "chat/message_context.html", context)


@require_http_methods(["GET", "POST"])
@login_required
def message_edit(request: HttpRequest, message_id: int) -> HttpResponse:
    """The author's inline edit form (GET), or the edit itself (POST); `?cancel` shows the message again."""
    message = get_object_or_404(selectors.messages_visible_to(user=request.user), pk=message_id)
    if request.method == "GET" and "cancel" in request.GET:
        return HttpResponse(fragments.message_replaced(message=message))
    try:
        if request.method == "POST":
            services.message_edit(message=message, by=request.user, body=request.POST.get("body", ""))
            if not request.htmx:  # posted before htmx took the form over: back to the room, edit saved
                return redirect("chat:room", room_name=message.room.name)
            return HttpResponse(fragments.message_replaced(message=message))
        services.message_own_check(message=message, by=request.user)
    except services.ChatError as error:
        if request.method == "GET":
            return HttpResponseForbidden(str(error))
        return HttpResponse(fragments.message_edit_form(request=request, message=message, error=str(error)))
    return HttpResponse(fragments.message_edit_form(request=request, message=message))


@require_POST
@login_required
def message_retract(request: HttpRequest, message_id: int) -> HttpResponse:
    """Delete one's own message, leaving a placeholder in its place."""
    message = get_object_or_404(selectors.messages_visible_to(user=request.user), pk=message_id)
    try:
        services.message_retract(message=message, by=request.user)
    except services.ChatError as error:
        return HttpResponseForbidden(str(error))
    return HttpResponse(fragments.message_replaced(message=message))


@require_GET
@login_required
@room_view
def private_message_form(request: HttpRequest, room: Room) -> HttpResponse:
    """The message form prefilled with `/pm <username> `, swapped in when a name is clicked."""
    if not request.htmx:
        return redirect("chat:room", room_name=room.name)
    recipient = selectors.user_get_by_username(username=request.GET.get("to", ""))
    draft = f"/pm {recipient.username} " if recipient else ""
    return HttpResponse(fragments.message_form(room=room, draft=draft, oob=False))


@require_POST
@login_required
def reaction_toggle(request: HttpRequest, message_id: int) -> HttpResponse:
    """Give or take back one's reaction (`emoji`) to a message one may read; the page gets the new counts."""
    message = get_object_or_404(selectors.messages_visible_to(user=request.user), pk=message_id)
    try:
        services.reaction_toggle(message=message, user=request.user, emoji=request.POST.get("emoji", ""))
    except services.ChatError as error:
        if error.reason == "bad_emoji":
            return HttpResponseBadRequest(str(error))
        return HttpResponseForbidden(str(error))
    if not request.htmx:
        return redirect("chat:room", room_name=message.room.name)
    # Swapped out of band (the button says hx-swap="none"); the socket brings the same to the other pages.
    return HttpResponse(fragments.reactions(message=message))


# Exempt here, checked below: the size limit's handler must be in place before anything reads the body, and the
# CSRF middleware would read it first.
@csrf_exempt
@require_POST
@login_required
def attachment_upload(request: HttpRequest, room_name: str) -> HttpResponse:
    """Share the posted `file` (and `caption`) in the room as a message; an error shows in #chat-error."""
    limiter = attachments.SizeLimitedUploadHandler(request, limit=settings.CHAT_ATTACHMENT_MAX_BYTES)
    request.upload_handlers.insert(0, limiter)
    return _attachment_upload(request, room_name, limiter=limiter)


@csrf_protect
@room_view
def _attachment_upload(
    request: HttpRequest, room: Room, limiter: attachments.SizeLimitedUploadHandler
) -> HttpResponse:
    upload = request.FILES.get("file")  # reads the body, through the limiter
    try:
        if limiter.too_large:
            services.attachment_size_check(size=settings.CHAT_ATTACHMENT_MAX_BYTES + 1)
        services.attachment_create(
            room=room, author=request.user, upload=upload, caption=request.POST.get("caption", "")
        )
    except services.ChatError as error:
        if not request.htmx:  # the plain form: the room page again, with the sentence
            return room_page(request, room, error=str(error), status=400)
        return HttpResponse(fragments.chat_error(error=str(error)))
    if not request.htmx:
        return redirect("chat:room", room_name=room.name)
    # The message itself arrives over the socket, like every other; here the error is cleared and the form reset.
    return HttpResponse(fragments.chat_error() + fragments.upload_form(request=request, room=room))


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
