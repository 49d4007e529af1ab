"""Read HTML fragments the way a browser would: elements by id, and the text a user sees."""

from __future__ import annotations

from html.parser import HTMLParser


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(html: str) -> _Collector:
    collector = _Collector()
    collector.feed(html)
    collector.close()
    return collector


def element_tags(html: str) -> list[str]:
    """Every element's tag name, in document order."""
    return [tag for tag, _ in parse(html).tags]


def element_ids(html: str) -> list[str]:
    return [attrs["id"] for _, attrs in parse(html).tags if attrs.get("id")]


def attribute_names(html: str) -> set[str]:
    return {name for _, attrs in parse(html).tags for name in attrs}


def visible_text(html: str) -> str:
    """The text a reader sees, whitespace collapsed."""
    return " ".join("".join(parse(html).text).split())
