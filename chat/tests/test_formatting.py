"""The message renderer: each rule of the Markdown subset, hostile input, and fuzzing against the allowlist."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from chat import formatting, services
from chat.formatting import render_message
from chat.tests.conftest import direct_message
from tests.support.html import parse, visible_text

LINK_ATTRS = {"href", "rel", "target"}


def elements(html: str) -> list[tuple[str, dict[str, str | None]]]:
    return parse(html).tags


def links(html: str) -> list[dict[str, str | None]]:
    return [attrs for tag, attrs in elements(html) if tag == "a"]


class _Balance(HTMLParser):
    """Counts opened and closed elements, so that markup cut short is noticed."""

    VOID = {"br"}

    def __init__(self) -> None:
        super().__init__()
        self.open: list[str] = []
        self.balanced = True

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag not in self.VOID:
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.open or self.open.pop() != tag:
            self.balanced = False


def balanced(html: str) -> bool:
    checker = _Balance()
    checker.feed(html)
    checker.close()
    return checker.balanced and not checker.open


# --- Each rule ------------------------------------------------------------------------------------------------


def test_plain_text_is_one_paragraph_of_that_text():
    assert render_message("hello there") == "<p>hello there</p>"


def test_double_asterisks_make_bold():
    assert render_message("this is **bold** text") == "<p>this is <strong>bold</strong> text</p>"


@pytest.mark.parametrize("text", ["*italic*", "_italic_"])
def test_single_asterisks_or_underscores_make_italic(text):
    assert render_message(text) == "<p><em>italic</em></p>"


def test_backticks_make_inline_code_whose_content_stays_literal():
    assert render_message("run `**x** <b>`") == "<p>run <code>**x** &lt;b&gt;</code></p>"


def test_a_fenced_block_becomes_pre_code_without_a_language_class():
    html = render_message("```python\ndef f():\n    return '<b>'\n```")
    assert html == "<pre><code>def f():\n    return '&lt;b&gt;'\n</code></pre>"


def test_lines_starting_with_a_quote_sign_become_a_blockquote():
    html = render_message("> to be\n> or not")
    assert [tag for tag, _ in elements(html)] == ["blockquote", "p", "br"]
    assert visible_text(html) == "to be or not"


def test_a_bare_https_url_becomes_a_link_opening_in_a_new_tab_without_the_opener():
    html = render_message("see https://example.com/a?b=1&c=2 now")
    (link,) = links(html)
    assert link == {
        "href": "https://example.com/a?b=1&c=2",
        "target": "_blank",
        "rel": "nofollow noopener noreferrer",
    }
    assert visible_text(html) == "see https://example.com/a?b=1&c=2 now"


def test_a_bare_http_url_becomes_a_link_too():
    assert links(render_message("http://example.org"))[0]["href"] == "http://example.org"


@pytest.mark.parametrize("text", ["www.example.com", "example.com", "mail me at a@example.com", "ftp://example.com"])
def test_only_http_and_https_urls_become_links(text):
    assert links(render_message(text)) == []
    assert visible_text(render_message(text)) == text


def test_markdown_link_and_image_syntax_stay_text():
    html = render_message("[click](https://example.com) ![img](https://example.com/x.png)")
    assert {tag for tag, _ in elements(html)} == {"p", "a"}
    assert "img" not in [tag for tag, _ in elements(html)]
    assert visible_text(html) == "[click](https://example.com) ![img](https://example.com/x.png)"


@pytest.mark.parametrize("text", ["# not a heading", "- not a list", "1. not a list", "---", "    not code"])
def test_other_markdown_stays_text(text):
    html = render_message(text)
    assert [tag for tag, _ in elements(html)] == ["p"]
    assert visible_text(html) == text.strip()


def test_mentions_of_the_given_names_are_marked_in_text_but_not_in_code_or_links():
    html = render_message("hi @Bob, `@bob` https://x.example/@bob and @ghost", mention_names={"bob"})
    spans = [attrs for tag, attrs in elements(html) if tag == "span"]
    assert spans == [{"class": "mention"}]
    assert '<span class="mention">@Bob</span>' in html
    assert "<code>@bob</code>" in html


def test_a_mention_inside_bold_is_marked_too():
    assert (
        render_message("**@bob**", mention_names={"bob"})
        == '<p><strong><span class="mention">@bob</span></strong></p>'
    )


def test_a_backslash_keeps_an_asterisk_literal():
    assert render_message(r"2 \* 3 \* 4") == "<p>2 * 3 * 4</p>"


def test_line_breaks_are_kept():
    assert render_message("one\ntwo") == "<p>one<br>\ntwo</p>"


# --- Hostile input ------------------------------------------------------------------------------------------------

HOSTILE = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    '<a href="javascript:alert(1)">x</a>',
    "<svg onload=alert(1)>",
    '<p onclick="alert(1)">x</p>',
    "<style>body{display:none}</style>",
    "<!-- comment --><b>x</b>",
    "&lt;script&gt;alert(1)&lt;/script&gt;",
    "&#x3C;script&#x3E;",
    "<iframe srcdoc=&lt;script&gt;></iframe>",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_typed_html_is_shown_as_text(text):
    html = render_message(text)
    assert [tag for tag, _ in elements(html)] == ["p"]
    assert visible_text(html) == text


@pytest.mark.parametrize(
    "text",
    [
        "javascript:alert(1)",
        "JaVaScRiPt:alert(1)",
        "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
        "vbscript:msgbox(1)",
        "[x](javascript:alert(1))",
        "[x](data:text/html,<script>alert(1)</script>)",
        "<javascript:alert(1)>",
        "<https://example.com>",
        "//evil.example/path",
        "java\tscript:alert(1)",
        'https://a.example/"onmouseover=alert(1)',
        "http://a.example/'><script>alert(1)</script>",
    ],
)
def test_no_script_or_data_url_ever_becomes_a_link_and_quotes_end_a_url(text):
    html = render_message(text)
    for link in links(html):
        assert str(link["href"]).lower().startswith(("http://", "https://"))
        assert set(link) == LINK_ATTRS
    assert not [tag for tag, _ in elements(html) if tag not in {"p", "a"}]
    assert not any(name.startswith("on") for _, attrs in elements(html) for name in attrs)


@pytest.mark.parametrize(
    "text",
    [
        "**bold *nested _deep_ still* bold**",
        "**unclosed bold",
        "*unclosed _italic",
        "`unclosed code",
        "```\nunclosed fence",
        "> > > nested quotes",
        "> **bold across\nlines** ok",
        "***triple*** __double__ ___x___",
        "*a **b* c**",
    ],
)
def test_nested_and_unclosed_markup_gives_balanced_allowlisted_html(text):
    html = render_message(text)
    assert balanced(html), html
    assert {tag for tag, _ in elements(html)} <= formatting.ALLOWED_TAGS


def test_the_sanitizer_alone_removes_what_the_parser_could_never_produce():
    dirty = (
        '<p onclick="x"><a href="javascript:alert(1)" onmouseover="x">a</a><img src=x onerror=y>'
        '<span class="mention" style="x">b</span><span class="mention evil">e</span>'
        '<script>alert(1)</script><a href="data:,x">c</a>'
        '<a href="https://ok.example" target="_self" rel="opener">d</a></p>'
    )
    html = formatting.sanitize(dirty)
    assert {tag for tag, _ in elements(html)} <= {"p", "a", "span"}
    assert links(html)[:2] == [
        {"rel": "nofollow noopener noreferrer", "target": "_blank"},
        {"rel": "nofollow noopener noreferrer", "target": "_blank"},
    ]
    assert links(html)[2]["href"] == "https://ok.example"
    assert links(html)[2]["target"] == "_blank"
    assert [attrs for tag, attrs in elements(html) if tag == "span"] == [{"class": "mention"}, {}]
    assert "alert" not in visible_text(html)


# --- Fuzzing ------------------------------------------------------------------------------------------------------

MARKUP_PIECES = st.sampled_from(
    [
        "*", "**", "_", "`", "```", "\n", "> ", "\\", "<", ">", "&", '"', "'", "=", "(", ")", "[", "]", "!",
        "@bob", "http://", "https://", "javascript:", "data:", "vbscript:", "//", "www.", ".com", "/", "#",
        "<a href=", "<script>", "onerror=", "<img ", " ", "x", "é", "\u200b", "\t", "~~~",
    ]
)  # fmt: skip
TEXTS = st.one_of(
    st.text(max_size=200),
    st.lists(st.one_of(MARKUP_PIECES, st.text(max_size=5)), max_size=40).map("".join),
)


@hypothesis_settings(max_examples=400, deadline=None)
@given(text=TEXTS)
def test_fuzzed_text_renders_only_allowlisted_elements_attributes_and_http_links(text):
    html = render_message(text, mention_names={"bob"})
    for tag, attrs in elements(html):
        assert tag in formatting.ALLOWED_TAGS, (tag, html)
        assert set(attrs) <= formatting.ALLOWED_ATTRIBUTES.get(tag, set()), (tag, attrs, html)
        if tag == "a":
            assert str(attrs.get("href", "")).lower().startswith(("http://", "https://")), html
            assert attrs["rel"] == "nofollow noopener noreferrer"
            assert attrs["target"] == "_blank"
        if tag == "span":
            assert attrs == {"class": "mention"}
    assert balanced(html), html


@pytest.mark.django_db
def test_a_stored_message_keeps_its_rendering_and_an_edit_renders_again(alice, bob):
    room = services.rooms.room_get_or_create(name="lobby")
    message = services.messages.message_create(room=room, author=alice, body="**hi** @bob")
    message.refresh_from_db()
    assert message.body_html == '<p><strong>hi</strong> <span class="mention">@bob</span></p>'
    services.messages.message_edit(message=message, by=alice, body="_bye_")
    message.refresh_from_db()
    assert message.body_html == "<p><em>bye</em></p>"
    assert list(message.mentions.all()) == []


@pytest.mark.django_db
def test_a_private_message_is_formatted_but_marks_no_mention(alice, bob):
    message = direct_message(alice, bob, "`@bob` @bob")
    assert message.body_html == "<p><code>@bob</code> @bob</p>"
