"""Message text to HTML: a small Markdown subset, @mentions, then an allowlist sanitizer. Run once per store or edit.

The parser never passes typed HTML through (`html` off) and makes links only of bare http(s) URLs; nh3 then
removes anything outside the allowlist below, so a parser bug still cannot let markup or a script URL out.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import nh3
from markdown_it import MarkdownIt
from markdown_it.rules_core import StateCore
from markdown_it.token import Token

from chat.models import MENTION_RE

ALLOWED_TAGS = frozenset({"p", "br", "strong", "em", "code", "pre", "blockquote", "a", "span"})
ALLOWED_ATTRIBUTES = {"a": {"href", "target", "rel"}, "span": {"class"}}
ALLOWED_SCHEMES = frozenset({"http", "https"})
LINK_REL = "nofollow noopener noreferrer"
SAFE_URL_RE = re.compile(r"^https?://[^\s\"'<>`]+$", re.IGNORECASE)
# A link whose URL the sanitizer refused (it drops an href its URL parser cannot read): shown as its text.
HREFLESS_LINK_RE = re.compile(r'<a target="_blank" rel="nofollow noopener noreferrer">([^<]*)</a>')


def _validate_link(url: str) -> bool:
    """Only absolute http(s) URLs become links: no javascript:, data:, vbscript:, mailto:, //host or relative."""
    return SAFE_URL_RE.match(url) is not None


def _parser() -> MarkdownIt:
    # "zero" enables nothing but paragraphs and text; these are the rules of the subset (docs/contract.md).
    # No entity rule: "&lt;" typed stays "&lt;" on the page; no link, image, autolink, heading or list syntax.
    md = MarkdownIt("zero", {"html": False, "linkify": True, "breaks": True, "typographer": False})
    md.enable(["emphasis", "backticks", "fence", "blockquote", "linkify", "newline", "escape"])
    md.linkify.set({"fuzzy_link": False, "fuzzy_email": False, "fuzzy_ip": False})
    md.validateLink = _validate_link
    md.core.ruler.after("linkify", "mentions", _mentions)
    return md


def _mentions(state: StateCore) -> None:
    """Wrap @name of the users the message mentions in <span class="mention">, in text only (not code or links)."""
    names: set[str] = state.env.get("mention_names", set())
    if not names:
        return
    for block in state.tokens:
        if block.type != "inline" or not block.children:
            continue
        children: list[Token] = []
        in_link = 0
        for token in block.children:
            in_link += {"link_open": 1, "link_close": -1}.get(token.type, 0)
            if token.type != "text" or in_link or "@" not in token.content:
                children.append(token)
                continue
            children.extend(_split_mentions(token.content, names))
        block.children = children


def _split_mentions(text: str, names: set[str]) -> Iterable[Token]:
    start = 0
    for match in MENTION_RE.finditer(text):
        if match["username"].lower() not in names:
            continue
        if match.start() > start:
            yield _text(text[start : match.start()])
        opening = Token("mention_open", "span", 1)
        opening.attrSet("class", "mention")
        yield opening
        yield _text(match[0])
        yield Token("mention_close", "span", -1)
        start = match.end()
    if start < len(text):
        yield _text(text[start:])


def _text(content: str) -> Token:
    token = Token("text", "", 0)
    token.content = content
    return token


def _href_filter(tag: str, attribute: str, value: str) -> str | None:
    if tag == "a" and attribute == "href":
        return value if _validate_link(value) else None
    if tag == "a" and attribute == "target":
        return "_blank"
    if tag == "span" and attribute == "class":
        return "mention" if value == "mention" else None
    return value


_MARKDOWN = _parser()


def sanitize(html: str) -> str:
    """Keep only the allowlisted elements and attributes; every link opens in a new tab without the opener."""
    return nh3.clean(
        html,
        tags=set(ALLOWED_TAGS),
        attributes={"a": {"href"}, "span": {"class"}},
        attribute_filter=_href_filter,
        url_schemes=set(ALLOWED_SCHEMES),
        link_rel=LINK_REL,
        set_tag_attribute_values={"a": {"target": "_blank"}},
        strip_comments=True,
    )


def render_message(text: str, *, mention_names: Iterable[str] = ()) -> str:
    """The HTML of a message's text; `mention_names` are the (lower-cased) usernames shown as mentions."""
    html = _MARKDOWN.render(text, {"mention_names": {name.lower() for name in mention_names}})
    return HREFLESS_LINK_RE.sub(r"\1", sanitize(html)).strip()
