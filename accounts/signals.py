"""What the accounts app tells the others, which it does not know (chat receives these in chat.signals)."""

from __future__ import annotations

from django.dispatch import Signal

# The admin is about to delete these accounts (`users`, by `by`): what other apps keep of them goes first, visibly.
users_deleting = Signal()

# The admin set a new password for `user` (by `request.user`): the account's other sessions end.
password_set_by_admin = Signal()
