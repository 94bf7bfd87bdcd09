"""Parsers the report tests share: what an HTML page contains, how a Markdown table row splits."""

from __future__ import annotations

from html.parser import HTMLParser


class Page(HTMLParser):
    """Elements (tag, attrs) in document order and the visible text of a page (not <style>)."""

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.style: list[str] = []
        self.texts: list[str] = []
        self._in_style = False
        self.feed(html)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))
        self._in_style = tag == "style"

    def handle_startendtag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))

    def handle_endtag(self, tag):
        if tag == "style":
            self._in_style = False

    def handle_data(self, data):
        (self.style if self._in_style else self.texts).append(data)

    @property
    def text(self) -> str:
        return "".join(self.texts)

    def tags(self) -> set[str]:
        return {t for t, _ in self.elements}


URL_ATTRS = {"src", "href", "xlink:href", "action", "formaction", "srcset", "poster", "data",
             "background", "ping", "manifest", "cite", "longdesc"}


def external_refs(page: Page) -> list[str]:
    """URL-bearing attribute values that do not point inside the page."""
    out = []
    for tag, attrs in page.elements:
        for k, v in attrs.items():
            if k in URL_ATTRS and v is not None and not v.startswith("#"):
                out.append(f"<{tag} {k}={v!r}>")
            if k == "content" and attrs.get("http-equiv", "").lower() == "refresh":
                out.append(f"<{tag} refresh {v!r}>")
    return out


def split_row(line: str) -> list[str]:
    """Cells of a GFM pipe-table row, honouring backslash escapes (``\\|`` is not a separator)."""
    assert line.startswith("|") and line.endswith("|"), line
    cells, cur, i = [], "", 1
    while i < len(line) - 1:
        ch = line[i]
        if ch == "\\" and i + 1 < len(line) - 1:
            cur += line[i:i + 2]
            i += 2
            continue
        if ch == "|":
            cells.append(cur)
            cur = ""
        else:
            cur += ch
        i += 1
    if line[-2] == "\\":  # "...\|" at the end would escape the closing pipe
        raise AssertionError(f"row ends in an escaped pipe: {line!r}")
    cells.append(cur)
    return cells


def md_tables(text: str) -> list[list[str]]:
    """Every pipe table of a Markdown text as its list of lines."""
    tables, cur = [], []
    for line in text.splitlines():
        if line.startswith("|"):
            cur.append(line)
        elif cur:
            tables.append(cur)
            cur = []
    if cur:
        tables.append(cur)
    return tables


class Tables(HTMLParser):
    """The cells' text of every ``<table id=...>`` of a page: ``Tables(html)["x"]`` is a list
    of rows (header row first), each a list of cell texts."""

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.tables: dict[str, list[list[str]]] = {}
        self._id: str | None = None
        self._cell: list[str] | None = None
        self.feed(html)
        self.close()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table" and a.get("id"):
            self._id = a["id"]
            self.tables[self._id] = []
        elif self._id and tag == "tr":
            self.tables[self._id].append([])
        elif self._id and tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "table":
            self._id = None
        elif self._id and tag in ("td", "th") and self._cell is not None:
            self.tables[self._id][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)

    def __getitem__(self, key: str) -> list[list[str]]:
        return self.tables[key]


def section(html: str, name: str) -> str:
    """The markup of ``<section id=name>``."""
    start = html.index(f'<section id="{name}">')
    return html[start:html.index("</section>", start)]
