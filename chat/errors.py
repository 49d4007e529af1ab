"""The refusals a person sees: each a sentence shown in #chat-error, with a short reason code for the logs."""

from __future__ import annotations


class ChatError(Exception):
    """A refusal that the user sees as a sentence in #chat-error.

    `reason` is a short code for the logs, which never carry the sentence: it can quote what the user typed.
    """

    reason = "refused"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class InvalidRoomName(ChatError):
    reason = "invalid_room"


class NotFound(ChatError):
    """No such conversation for this reader: it does not exist, or they may not read it (never said which)."""

    reason = "not_found"


class DeliveryError(ChatError):
    """The message is stored but the channel layer could not carry it live."""

    reason = "delivery_failed"


class StorageError(ChatError):
    """The database refused the message: nothing is stored, nothing is published."""

    reason = "storage_failed"


class TooManyWrites(ChatError):
    """A write over its limit (chat.flood): `kind` names the limit, `retry_after` says when there is room again."""

    reason = "rate_limited"

    def __init__(self, message: str, *, kind: str, retry_after: float) -> None:
        super().__init__(message)
        self.kind, self.retry_after = kind, retry_after
