"""Attachments: uploads judged by their content, limits, the live message, and who may fetch the bytes."""

from __future__ import annotations

import io
import re
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from django.core.files import uploadedfile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from PIL import Image

from chat import attachments, fragments, services
from chat.models import Attachment, Message, Room
from chat.tests.conftest import direct_message, drain, joined, receive_until
from tests.support.html import parse, visible_text
from tests.support.servers import BASE_DIR

MiB = 1024 * 1024


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path: Path) -> Path:
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


def stored_files(root: Path) -> list[Path]:
    return sorted(path for path in root.rglob("*") if path.is_file()) if root.exists() else []


def png_bytes(size: tuple[int, int] = (640, 480), color: str = "teal") -> bytes:
    data = io.BytesIO()
    Image.new("RGB", size, color).save(data, format="PNG")
    return data.getvalue()


def image_bytes(fmt: str, size: tuple[int, int] = (40, 30)) -> bytes:
    data = io.BytesIO()
    Image.new("RGB", size, "orange").save(data, format=fmt)
    return data.getvalue()


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def pixel_bomb() -> bytes:
    """A valid-looking PNG of a few hundred bytes whose header announces 100,000 x 100,000 pixels."""
    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    rows = zlib.compress(b"\x00" * 1000)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", rows) + png_chunk(b"IEND", b"")


def png_announcing(width: int, height: int) -> bytes:
    """A real PNG of that size, all black: its rows compress to almost nothing (7000 x 7000 is about 140 KiB)."""
    compressor = zlib.compressobj(9)
    row = b"\x00" * (1 + 3 * width)  # filter byte, then RGB
    rows = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", rows) + png_chunk(b"IEND", b"")


def webp_announcing(width: int, height: int) -> bytes:
    """The header of an extended WebP (VP8X) announcing that canvas, and nothing to draw on it."""
    canvas = (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    chunk = b"VP8X" + struct.pack("<I", 10) + b"\x00\x00\x00\x00" + canvas
    return b"RIFF" + struct.pack("<I", 4 + len(chunk)) + b"WEBP" + chunk


def upload(client: Client, name: str, content: bytes, room: str = "lobby", caption: str = "", **headers: str):
    file = SimpleUploadedFile(name, content, content_type="application/octet-stream")
    return client.post(f"/chat/{room}/attachments/", {"file": file, "caption": caption}, headers=headers)


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def served(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


@pytest.fixture
def room(db) -> Room:
    return services.rooms.room_get_or_create(name="lobby")


# --- Uploads ------------------------------------------------------------------------------------------------------


def test_a_png_becomes_a_message_with_a_thumbnail_linking_to_the_full_image(room, alice, media_root):
    response = upload(logged_in(alice), "holiday.png", png_bytes(), caption="**look**", HX_Request="true")
    assert response.status_code == 200
    message = Message.objects.get()
    attachment = message.attachment
    assert (attachment.content_type, attachment.width, attachment.height) == ("image/png", 640, 480)
    assert (attachment.thumbnail_width, attachment.thumbnail_height) == (320, 240)
    assert message.body_html == "<p><strong>look</strong></p>"
    assert len(stored_files(media_root)) == 2

    html = fragments.message_appended(message=Message.objects.select_related("attachment").get())
    links = [attrs for tag, attrs in parse(html).tags if tag == "a"]
    images = [attrs for tag, attrs in parse(html).tags if tag == "img"]
    assert links[0]["href"] == f"/chat/files/{attachment.pk}/"
    assert images == [
        {
            "src": f"/chat/files/{attachment.pk}/thumbnail/",
            "alt": "holiday.png",
            "width": "320",
            "height": "240",
            "loading": "lazy",
        }
    ]
    assert html.index('<a class="attachment attachment--image"') < html.index("<img")


@pytest.mark.parametrize(
    ("fmt", "content_type"), [("JPEG", "image/jpeg"), ("GIF", "image/gif"), ("WEBP", "image/webp")]
)
def test_jpeg_gif_and_webp_are_images_too(room, alice, fmt, content_type):
    upload(logged_in(alice), "picture", image_bytes(fmt))
    attachment = Attachment.objects.get()
    assert attachment.content_type == content_type
    assert attachment.is_image
    assert attachment.thumbnail


def test_a_text_file_is_a_link_with_its_name_and_size(room, alice):
    upload(logged_in(alice), "notes.txt", b"remember the milk\n" * 100)
    attachment = Attachment.objects.get()
    assert attachment.content_type == "application/octet-stream"
    assert not attachment.thumbnail
    html = fragments.message_appended(message=Message.objects.select_related("attachment").get())
    assert "img" not in [tag for tag, _ in parse(html).tags]
    link = html.split('class="attachment attachment--file"', 1)[1].split("</a>", 1)[0]
    assert visible_text("<a " + link) == "notes.txt 1.8 KB"


def test_an_svg_with_a_script_is_a_download_never_an_image(room, alice):
    svg = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(document.cookie)</script></svg>'
    upload(logged_in(alice), "logo.svg", svg)
    attachment = Attachment.objects.get()
    assert not attachment.is_image
    assert attachment.file.name.endswith(".bin")


def test_an_html_file_named_png_is_judged_by_its_content(room, alice):
    upload(logged_in(alice), "cat.png", b"<html><script>alert(1)</script></html>")
    attachment = Attachment.objects.get()
    assert attachment.content_type == "application/octet-stream"
    assert attachment.file.name.endswith(".bin")
    assert attachment.name == "cat.png"


def test_a_file_claiming_png_that_does_not_decode_is_a_download(room, alice):
    upload(logged_in(alice), "broken.png", b"\x89PNG\r\n\x1a\n" + b"garbage" * 50)
    assert Attachment.objects.get().content_type == "application/octet-stream"


def test_a_file_over_the_limit_is_refused_in_chat_error_and_nothing_is_stored(room, alice, settings, media_root):
    settings.CHAT_ATTACHMENT_MAX_BYTES = 1000
    response = upload(logged_in(alice), "big.bin", b"x" * 1001, HX_Request="true")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="chat-error"' in html
    assert "at most" in visible_text(html)
    assert not Message.objects.exists()
    assert stored_files(media_root) == []
    assert upload(logged_in(alice), "ok.bin", b"x" * 1000).status_code == 302


def test_the_default_limit_is_ten_mebibytes(room, alice, settings):
    assert settings.CHAT_ATTACHMENT_MAX_BYTES == 10 * 1024 * 1024
    response = upload(logged_in(alice), "big.bin", b"\0" * (10 * 1024 * 1024 + 1), HX_Request="true")
    assert "at most 10 MiB" in visible_text(response.content.decode())
    assert not Attachment.objects.exists()


def test_an_empty_or_missing_file_is_refused(room, alice, media_root):
    client = logged_in(alice)
    assert "empty" in visible_text(upload(client, "empty.txt", b"", HX_Request="true").content.decode())
    response = client.post("/chat/lobby/attachments/", {"caption": "no file"}, headers={"HX-Request": "true"})
    assert "Choose a file" in visible_text(response.content.decode())
    assert not Message.objects.exists()
    assert stored_files(media_root) == []


def test_a_refused_upload_without_htmx_shows_the_room_page_with_the_error(room, alice):
    response = upload(logged_in(alice), "empty.txt", b"")
    assert response.status_code == 400
    error = response.content.decode().split('id="chat-error"', 1)[1].split("</div>", 1)[0]
    assert "That file is empty" in visible_text("<div " + error)
    assert 'id="upload-form"' in response.content.decode()


def test_a_pixel_bomb_is_refused_before_it_is_decoded(room, alice, media_root):
    bomb = pixel_bomb()
    assert len(bomb) < 1000
    response = upload(logged_in(alice), "bomb.png", bomb, HX_Request="true")
    assert "too large to show" in visible_text(response.content.decode())
    assert not Message.objects.exists()
    assert stored_files(media_root) == []


def peak_memory_of_inspecting(path: Path, max_pixels: int) -> tuple[str, int]:
    """Judge the file in a fresh process: whether it was decoded or refused, and how many MiB the process's peak
    resident memory grew meanwhile (Pillow allocates pixels in C, where tracemalloc does not see them)."""
    code = textwrap.dedent(
        f"""
        import resource
        from django.core.files.uploadedfile import SimpleUploadedFile
        from chat.attachments import ImageTooLarge, inspect
        upload = SimpleUploadedFile("bomb.png", open({str(path)!r}, "rb").read())
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        try:
            inspect(upload, max_pixels={max_pixels}, thumbnail_size=320)
            outcome = "decoded"
        except ImageTooLarge:
            outcome = "refused"
        print(outcome, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=BASE_DIR, capture_output=True, text=True, timeout=120, check=True
    )
    outcome, grown = result.stdout.split()
    return outcome, int(grown)


def test_a_small_png_announcing_49_megapixels_is_refused_without_being_decoded(room, alice, settings, tmp_path):
    assert settings.CHAT_ATTACHMENT_MAX_PIXELS == 40_000_000
    bomb = png_announcing(7000, 7000)
    assert len(bomb) < 200 * 1024
    (path := tmp_path / "bomb.png").write_bytes(bomb)

    outcome, grown = peak_memory_of_inspecting(path, settings.CHAT_ATTACHMENT_MAX_PIXELS)

    assert outcome == "refused"
    assert grown < 16, f"{grown} MiB allocated to refuse it"
    # The measure sees a decode: the same file under the old limit (50 million) costs well over 100 MiB.
    assert peak_memory_of_inspecting(path, 50_000_000)[0] == "decoded"
    assert peak_memory_of_inspecting(path, 50_000_000)[1] > 100
    response = upload(logged_in(alice), "bomb.png", bomb, HX_Request="true")
    assert "too large to show (7000x7000 pixels; at most 40,000,000)" in visible_text(response.content.decode())
    assert not Message.objects.exists()


def test_a_webp_announcing_a_huge_canvas_is_refused_before_pillow_opens_it(room, alice, monkeypatch):
    # Pillow's WebP decoder allocates the whole canvas as it opens the file: the size is read from the header first.
    opened = []
    monkeypatch.setattr(attachments.Image, "open", lambda *args, **kwargs: opened.append(args))
    bomb = webp_announcing(10_000, 10_000)
    assert attachments.webp_canvas_size(bomb[:30]) == (10_000, 10_000)

    response = upload(logged_in(alice), "bomb.webp", bomb, HX_Request="true")

    assert "too large to show (10000x10000 pixels" in visible_text(response.content.decode())
    assert opened == []
    assert not Message.objects.exists()


@pytest.mark.parametrize("lossless", [False, True])
def test_the_webp_header_is_read_as_pillow_reads_it(lossless):
    data = io.BytesIO()
    Image.new("RGBA" if lossless else "RGB", (321, 123), "orange").save(data, format="WEBP", lossless=lossless)
    assert attachments.webp_canvas_size(data.getvalue()[:30]) == (321, 123)


def test_the_pixel_limit_is_a_setting(room, alice, settings):
    settings.CHAT_ATTACHMENT_MAX_PIXELS = 100
    response = upload(logged_in(alice), "small.png", png_bytes((20, 20)), HX_Request="true")
    assert "too large to show" in visible_text(response.content.decode())


def test_uploads_per_user_are_rate_limited(room, alice, bob, settings):
    settings.CHAT_WRITE_LIMITS = {**settings.CHAT_WRITE_LIMITS, "uploads": (2, 60)}
    client = logged_in(alice)
    for n in range(2):
        assert upload(client, f"{n}.txt", b"hi").status_code == 302
    response = upload(client, "3.txt", b"hi", HX_Request="true")
    assert response.status_code == 429
    assert "Slow down: at most 2 files per minute" in visible_text(response.content.decode())
    assert Attachment.objects.count() == 2
    assert upload(logged_in(bob), "b.txt", b"hi").status_code == 302


# --- The size of a request, not only of its file -----------------------------------------------------------------


def test_djangos_own_bounds_match_the_upload_form(settings):
    assert settings.REQUEST_BODY_MAX_BYTES == settings.CHAT_ATTACHMENT_MAX_BYTES + 64 * 1024
    assert settings.DATA_UPLOAD_MAX_MEMORY_SIZE == 64 * 1024
    assert settings.DATA_UPLOAD_MAX_NUMBER_FILES == 1
    assert settings.FILE_UPLOAD_MAX_MEMORY_SIZE < settings.CHAT_ATTACHMENT_MAX_BYTES


@pytest.fixture
def spooled(monkeypatch) -> list[str]:
    """The names of the uploaded files Django writes to temporary files during the test."""
    names = []
    original = uploadedfile.TemporaryUploadedFile.__init__

    def note(self, name, *args, **kwargs):
        names.append(name)
        original(self, name, *args, **kwargs)

    monkeypatch.setattr(uploadedfile.TemporaryUploadedFile, "__init__", note)
    return names


def test_more_files_in_one_upload_are_refused_before_they_are_spooled(room, alice, media_root, spooled):
    # Each was under the file limit: before, four extra 9 MiB files went to temporary files with the shared one.
    files = {"file": SimpleUploadedFile("a.txt", b"hi")}
    files |= {f"extra{n}": SimpleUploadedFile(f"{n}.bin", b"\0" * (6 * MiB)) for n in range(2)}

    response = logged_in(alice).post("/chat/lobby/attachments/", files, headers={"HX-Request": "true"})

    assert response.status_code == 413
    assert response["HX-Reswap"] == "none"
    sentence = "Files can be at most 10 MiB, one at a time; that upload is larger."
    assert visible_text(response.content.decode()) == sentence
    assert spooled in ([], ["a.txt"])  # the shared file may be (the request is large), the extra ones never
    assert not Message.objects.exists()
    assert stored_files(media_root) == []


def test_the_fields_beside_the_file_hold_at_most_64_kib(room, alice, media_root):
    file = SimpleUploadedFile("a.txt", b"hi")
    data = {"caption": "x" * 1000, "file": file, "padding": "y" * (64 * 1024)}

    response = logged_in(alice).post("/chat/lobby/attachments/", data)

    assert response.status_code == 413
    assert "one at a time; that upload is larger" in visible_text(response.content.decode())
    assert not Message.objects.exists()


def test_the_files_of_one_request_count_together_against_the_size_limit(room, alice, settings, media_root):
    # Even where Django would take more than one file, their bytes together are bounded.
    settings.CHAT_ATTACHMENT_MAX_BYTES = 1000
    settings.DATA_UPLOAD_MAX_NUMBER_FILES = 5
    data = {"file": SimpleUploadedFile("a.bin", b"a" * 600), "again": SimpleUploadedFile("b.bin", b"b" * 600)}

    response = logged_in(alice).post("/chat/lobby/attachments/", data, headers={"HX-Request": "true"})

    assert "at most" in visible_text(response.content.decode())
    assert not Message.objects.exists()
    assert stored_files(media_root) == []


def test_uploading_needs_a_login_a_post_and_a_csrf_token(room, alice):
    assert upload(Client(), "a.txt", b"hi").status_code == 302
    assert logged_in(alice).get("/chat/lobby/attachments/").status_code == 405
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(alice)
    assert upload(strict, "a.txt", b"hi").status_code == 403
    assert not Attachment.objects.exists()


def test_a_read_only_room_takes_no_upload(room, alice):
    Room.objects.filter(pk=room.pk).update(read_only=True)
    response = upload(logged_in(alice), "a.txt", b"hi", HX_Request="true")
    assert "read-only" in visible_text(response.content.decode())
    assert not Attachment.objects.exists()


def test_the_room_page_carries_the_upload_form_of_the_contract(room, alice):
    html = logged_in(alice).get("/chat/lobby/").content.decode()
    (form,) = [attrs for tag, attrs in parse(html).tags if tag == "form" and attrs.get("id") == "upload-form"]
    assert form["method"] == "post"
    assert form["enctype"] == "multipart/form-data"
    assert form["action"] == "/chat/lobby/attachments/"
    names = [attrs.get("name") for tag, attrs in parse(html.split('id="upload-form"')[1]).tags if tag == "input"]
    assert {"file", "caption", "csrfmiddlewaretoken"} <= set(names)


def test_the_room_page_shows_attachments_in_a_constant_number_of_queries(
    room, alice, settings, django_assert_max_num_queries
):
    settings.CHAT_ATTACHMENT_RATE_LIMIT = 100
    settings.CHAT_WRITE_LIMITS = {**settings.CHAT_WRITE_LIMITS, "uploads": (100, 60)}
    client = logged_in(alice)
    for n in range(3):
        upload(client, f"{n}.png", png_bytes((10, 10)))
        upload(client, f"{n}.txt", b"text")
    client.get("/chat/lobby/")  # the first visit joins the room
    # The session, the user, the room, its log, the whispers, the read mark, the online list, the sidebar (3).
    with django_assert_max_num_queries(11):
        html = client.get("/chat/lobby/").content.decode()
    assert html.count('class="attachment attachment--image"') == 3
    assert html.count('class="attachment attachment--file"') == 3


# --- Deleting -----------------------------------------------------------------------------------------------------


def test_deleting_the_message_removes_the_file(room, alice, media_root, django_capture_on_commit_callbacks):
    upload(logged_in(alice), "a.png", png_bytes())
    message = Message.objects.get()
    assert len(stored_files(media_root)) == 2
    with django_capture_on_commit_callbacks(execute=True):
        services.messages.message_retract(message=message, by=alice)
    assert not Attachment.objects.exists()
    assert stored_files(media_root) == []
    assert "attachment" not in fragments.message_replaced(message=message)


def test_a_moderator_deleting_messages_removes_their_files(
    room, alice, media_root, django_capture_on_commit_callbacks
):
    upload(logged_in(alice), "a.txt", b"one")
    upload(logged_in(alice), "b.png", png_bytes())
    with django_capture_on_commit_callbacks(execute=True):
        services.moderation.message_delete_many(messages=Message.objects.all(), by=alice)
    assert stored_files(media_root) == []


# --- Serving ------------------------------------------------------------------------------------------------------


def test_a_reader_gets_the_image_inline_with_nosniff(room, alice, bob):
    content = png_bytes()
    upload(logged_in(alice), "holiday.png", content)
    attachment = Attachment.objects.get()
    response = logged_in(bob).get(f"/chat/files/{attachment.pk}/")
    assert response.status_code == 200
    assert served(response) == content
    assert response["Content-Type"] == "image/png"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Content-Disposition"].startswith("inline")
    thumbnail = logged_in(bob).get(f"/chat/files/{attachment.pk}/thumbnail/")
    assert thumbnail.status_code == 200
    assert Image.open(io.BytesIO(served(thumbnail))).size == (320, 240)
    assert thumbnail["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("notes.txt", b"hello"),
        ("logo.svg", b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'),
        ("cat.png", b"<html><script>alert(1)</script></html>"),
    ],
)
def test_anything_but_the_four_image_types_is_served_as_a_download(room, alice, bob, name, content):
    upload(logged_in(alice), name, content)
    attachment = Attachment.objects.get()
    response = logged_in(bob).get(f"/chat/files/{attachment.pk}/")
    assert response.status_code == 200
    assert served(response) == content
    assert response["Content-Type"] == "application/octet-stream"
    assert response["Content-Disposition"].startswith("attachment")
    assert name in response["Content-Disposition"]
    assert response["X-Content-Type-Options"] == "nosniff"
    assert logged_in(bob).get(f"/chat/files/{attachment.pk}/thumbnail/").status_code == 404


def test_an_outsider_and_an_anonymous_client_get_404(room, alice, bob, carol):
    upload(logged_in(alice), "a.png", png_bytes())
    public = Attachment.objects.get()
    # A file in a private message: only its two people may read it.
    whisper = direct_message(alice, bob, "just for bob")
    private = Attachment.objects.create(
        message=whisper, file=public.file.name, name="secret.txt", size=1, content_type="application/octet-stream"
    )
    for path in (f"/chat/files/{public.pk}/", f"/chat/files/{public.pk}/thumbnail/", f"/chat/files/{private.pk}/"):
        assert Client().get(path).status_code == 404, path
    assert logged_in(carol).get(f"/chat/files/{private.pk}/").status_code == 404
    assert logged_in(carol).get(f"/chat/files/{public.pk}/").status_code == 200
    assert logged_in(bob).get(f"/chat/files/{private.pk}/").status_code == 200
    assert logged_in(alice).get("/chat/files/999999/").status_code == 404


def test_behind_nginx_the_bytes_are_handed_over_with_x_accel_redirect(room, alice, settings):
    settings.CHAT_ATTACHMENT_ACCEL_REDIRECT = "/_attachments/"
    upload(logged_in(alice), "notes.txt", b"hello")
    attachment = Attachment.objects.get()
    response = logged_in(alice).get(f"/chat/files/{attachment.pk}/")
    assert response["X-Accel-Redirect"] == f"/_attachments/{attachment.file.name}"
    assert response.content == b""
    assert response["Content-Disposition"].startswith("attachment")
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Content-Type"] == "application/octet-stream"


# --- Live ---------------------------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("channel_layer")
async def test_when_alice_uploads_an_image_then_bob_sees_it_live(alice, bob):
    alice_socket, bob_socket = await joined(alice), await joined(bob)
    for socket in (alice_socket, bob_socket):
        await drain(socket)
    response = await sync_to_async(upload)(await sync_to_async(logged_in)(alice), "a.png", png_bytes(), caption="hi")
    assert response.status_code == 302
    attachment = await sync_to_async(Attachment.objects.get)()

    for socket in (alice_socket, bob_socket):
        frame = await receive_until(socket, lambda f: "attachment--image" in f)
        assert 'hx-swap-oob="beforeend:#messages"' in frame
        assert f'src="/chat/files/{attachment.pk}/thumbnail/"' in frame
        assert f'href="/chat/files/{attachment.pk}/"' in frame
    await alice_socket.disconnect()
    await bob_socket.disconnect()


def test_the_size_limit_holds_with_the_csrf_check_enforced(room, alice, settings, media_root):
    # The CSRF check reads the body: it must run after the limit's handler is in place, or the file is kept whole.
    settings.CHAT_ATTACHMENT_MAX_BYTES = 1000
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    client.get("/chat/lobby/")
    token = client.cookies["csrftoken"].value
    big = SimpleUploadedFile("big.bin", b"x" * 5000)
    response = client.post(
        "/chat/lobby/attachments/", {"file": big}, headers={"X-CSRFToken": token, "HX-Request": "true"}
    )
    assert response.status_code == 200
    assert "at most" in visible_text(response.content.decode())
    assert stored_files(media_root) == []
    small = SimpleUploadedFile("small.bin", b"x" * 10)
    ok = client.post("/chat/lobby/attachments/", {"file": small, "csrfmiddlewaretoken": token})
    assert ok.status_code == 302


@pytest.mark.django_db(transaction=True)
def test_a_file_stored_while_the_live_layer_is_down_is_kept_and_the_uploader_told(alice, media_root, monkeypatch):
    services.rooms.room_get_or_create(name="lobby")

    def layer_down(*args, **kwargs):
        raise ConnectionError("layer down")

    monkeypatch.setattr("chat.broadcasts.get_channel_layer", layer_down)
    response = upload(logged_in(alice), "a.png", png_bytes(), HX_Request="true")
    assert "saved, but it could not be delivered live" in visible_text(response.content.decode())
    assert Attachment.objects.count() == 1
    assert len(stored_files(media_root)) == 2


def test_a_file_shared_privately_is_served_to_its_two_people_only(room, alice, bob, carol):
    file = SimpleUploadedFile("plan.txt", b"the plan")
    conversation = services.rooms.direct_room_get_or_create(user=alice, peer=bob)
    message = services.attachments.attachment_create(room=conversation, author=alice, upload=file)
    assert message.is_private
    path = f"/chat/files/{message.attachment.pk}/"
    assert [logged_in(user).get(path).status_code for user in (alice, bob, carol)] == [200, 200, 404]


# --- nginx in front (deploy/nginx.conf) ---------------------------------------------------------------------------


def nginx_conf() -> str:
    return (BASE_DIR / "deploy" / "nginx.conf").read_text()


def test_nginx_takes_an_upload_on_every_path_the_app_takes_one(room, alice, bob, settings):
    from django.urls import reverse

    # Before, only /chat/.../attachments/ had the larger body size: a file over 1 MiB to a person got nginx's 413.
    paths = [reverse("chat:attachments", args=["lobby"]), reverse("dm:attachments", args=["bob"])]
    locations = re.findall(r"location ~ (\S+) \{\s*client_max_body_size (\d+)k;", nginx_conf())
    for path in paths:
        sizes = [int(size) * 1024 for pattern, size in locations if re.match(pattern, path)]
        assert sizes == [settings.REQUEST_BODY_MAX_BYTES], path


def test_nginx_answers_its_413_with_the_sentence_in_chat_error():
    conf = nginx_conf()
    assert re.search(r"^\s*error_page 413 @too_large;", conf, re.MULTILINE)
    body = re.search(r"location @too_large \{.*?return 413 '(.*?)';", conf, re.DOTALL)[1].replace("\\n", "\n")
    (error,) = [attrs for _, attrs in parse(body).tags if attrs.get("id") == "chat-error"]
    assert error == {"id": "chat-error", "role": "alert", "hx-swap-oob": "true"}
    assert visible_text(body) == attachments.too_large_sentence()
