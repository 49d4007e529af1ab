"""The files that attachments keep in Django's storage (a folder, or a bucket)."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from django.core.files.storage import default_storage

from chat.models import Attachment

logger = logging.getLogger(__name__)


def attachment_file_names(shared: Iterable[Attachment]) -> list[str]:
    """The storage names of these attachments' files and thumbnails."""
    return [name for attachment in shared for name in (attachment.file.name, attachment.thumbnail.name) if name]


def attachment_files_delete(*, names: list[str]) -> None:
    """Remove files from the storage once the rows that named them are gone; a failure is logged, not raised."""
    for name in names:
        try:
            default_storage.delete(name)
        except Exception:  # the storage's errors depend on its backend (disk, S3)
            logger.warning("attachment file not deleted", exc_info=True, extra={"file": name})
