"""The pages of threads: one thread beside its conversation's chrome, and the threads a user follows."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from chat import selectors, services
from chat.models import Room
from chat.views import conversation_view, room_page


@require_GET
@login_required
@conversation_view
def thread_detail(request: HttpRequest, room: Room, message_id: int) -> HttpResponse:
    """A message's thread: the message, its replies and a reply box, live over the conversation's socket. Opening
    it reads its replies. Not a thread: a reply's id, or a message of another conversation."""
    parent = selectors.thread_parent(room=room, message_id=message_id)
    if parent is None or parent.parent_id is not None:
        raise Http404("There is no such thread in this conversation.")
    services.threads.thread_mark_read(parent=parent, user=request.user)
    return room_page(request, room, parent=parent)


@require_GET
@login_required
def threads_followed(request: HttpRequest) -> HttpResponse:
    """The threads the user follows that have replies, the latest reply first, each with what they have not seen."""
    threads = selectors.threads_followed(user=request.user)
    context = {"threads": threads, "sidebar": selectors.sidebar(user=request.user)}
    return render(request, "chat/threads.html", context)
