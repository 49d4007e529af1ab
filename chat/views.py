from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest, HttpResponseForbidden
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from chat import fragments, selectors, services
from chat.models import Room


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
    messages = selectors.message_list_recent(room=room, user=request.user)
    # The socket marks the room read when it connects; the page shows what is new until then.
    last_read_id = selectors.room_last_read_id(room=room, user=request.user)
    context = {
        **fragments.limits(),
        "room": room,
        # Not "messages": that is django.contrib.messages' notices in base.html.
        "chat_messages": messages,
        "divider_id": selectors.unread_divider_id(messages=messages, last_read_id=last_read_id, user=request.user),
        "online_users": selectors.room_online_users(room=room),
    }
    return render(request, "chat/room.html", context)


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
