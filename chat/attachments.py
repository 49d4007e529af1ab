"""Uploaded files: their type judged from the content, thumbnails made once, and the upload's size bounded."""

from __future__ import annotations

import io
from dataclasses import dataclass

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import FileUploadHandler, SkipFile
from PIL import Image, ImageOps, UnidentifiedImageError

# Leading bytes of the four image types shown in the page; anything else is a file, whatever its name says.
SIGNATURES = {
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/gif": (b"GIF87a", b"GIF89a"),
}
PILLOW_FORMATS = {"image/png": "PNG", "image/jpeg": "JPEG", "image/gif": "GIF", "image/webp": "WEBP"}
OTHER_FILE = "application/octet-stream"


class ImageTooLarge(Exception):
    """The image's header announces more pixels than the limit: it is refused before it is decoded."""


@dataclass(frozen=True)
class Inspected:
    content_type: str
    width: int | None = None
    height: int | None = None
    thumbnail: bytes | None = None
    thumbnail_width: int | None = None
    thumbnail_height: int | None = None


def sniff(head: bytes) -> str | None:
    """The image type the first bytes announce, or None."""
    for content_type, signatures in SIGNATURES.items():
        if head.startswith(signatures):
            return content_type
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None


def inspect(upload: UploadedFile, *, max_pixels: int, thumbnail_size: int) -> Inspected:
    """Judge the file by its content; an image that decodes gets its size and a thumbnail, anything else is a file.

    The pixel count is read from the header, before any decoding, so a small file announcing a huge image (a
    decompression bomb) is refused without allocating it: Image.open only reads the header (PNG, JPEG, GIF), and a
    WebP's size is read here first, since Pillow's WebP decoder allocates its canvas as it opens the file.
    """
    upload.seek(0)
    head = upload.read(30)
    upload.seek(0)
    announced = sniff(head)
    if announced is None:
        return Inspected(content_type=OTHER_FILE)
    webp_size = webp_canvas_size(head) if announced == "image/webp" else None
    if webp_size is not None and webp_size[0] * webp_size[1] > max_pixels:
        raise ImageTooLarge(f"{webp_size[0]}x{webp_size[1]}")
    try:
        with Image.open(upload, formats=[PILLOW_FORMATS[announced]]) as image:
            width, height = image.size
            if width * height > max_pixels:  # before anything decodes: load(), verify(), thumbnail()
                raise ImageTooLarge(f"{width}x{height}")
            image.seek(0)
            image.load()
            thumbnail = ImageOps.exif_transpose(image)
            thumbnail.thumbnail((thumbnail_size, thumbnail_size))
            has_alpha = thumbnail.mode in {"RGBA", "LA", "P", "PA"}
            thumbnail = thumbnail.convert("RGBA" if has_alpha else "RGB")
            data = io.BytesIO()
            # PNG keeps transparency (PNG, GIF, WebP); JPEG is smaller for photographs.
            thumbnail.save(data, format="PNG" if has_alpha else "JPEG", quality=85, optimize=True)
            return Inspected(
                content_type=announced,
                width=width,
                height=height,
                thumbnail=data.getvalue(),
                thumbnail_width=thumbnail.width,
                thumbnail_height=thumbnail.height,
            )
    except Image.DecompressionBombError as error:  # Pillow's own, larger limit, checked as it opens the file
        raise ImageTooLarge(str(error).split(" pixels")[0].removeprefix("Image size (")) from error
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        # Says it is an image but does not decode as one: offered as a download, never shown.
        return Inspected(content_type=OTHER_FILE)
    finally:
        upload.seek(0)


def webp_canvas_size(head: bytes) -> tuple[int, int] | None:
    """The width and height a WebP's first 30 bytes announce (lossy, lossless or extended), or None."""
    chunk = head[12:16]
    if chunk == b"VP8 " and len(head) >= 30 and head[23:26] == b"\x9d\x01\x2a":
        return int.from_bytes(head[26:28], "little") & 0x3FFF, int.from_bytes(head[28:30], "little") & 0x3FFF
    if chunk == b"VP8X" and len(head) >= 30:
        return int.from_bytes(head[24:27], "little") + 1, int.from_bytes(head[27:30], "little") + 1
    if chunk == b"VP8L" and len(head) >= 25 and head[20] == 0x2F:
        bits = int.from_bytes(head[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    return None


def thumbnail_extension(data: bytes) -> str:
    return ".png" if data.startswith(SIGNATURES["image/png"][0]) else ".jpg"


def too_large_sentence() -> str:
    """What a person reads when their upload is over the limit before anything looked at the file."""
    return (
        f"Files can be at most {settings.CHAT_ATTACHMENT_MAX_BYTES / 1024 / 1024:g} MiB, one at a time; "
        "that upload is larger."
    )


class SizeLimitedUploadHandler(FileUploadHandler):
    """Stops keeping file bytes once the request's files pass the limit, so an oversize upload never fills the disk.

    First in the request's handlers: it passes each chunk on to Django's own handlers until the bytes of all the
    request's files together pass the limit, then skips the rest (the parser reads it on, discarding it) and
    remembers that it did. (Django also refuses a second file: DATA_UPLOAD_MAX_NUMBER_FILES.)
    """

    def __init__(self, request=None, *, limit: int) -> None:
        super().__init__(request)
        self.limit = limit
        self.received = 0
        self.too_large = False

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        self.received += len(raw_data)
        if self.received > self.limit:
            self.too_large = True
            raise SkipFile
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None
