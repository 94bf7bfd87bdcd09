"""IIS / W3C extended log format."""

from __future__ import annotations

import re
from dataclasses import dataclass

from threatscope.ingest.formats import Part, register, sql_str
from threatscope.ingest.formats._directive import DirectiveFormat


@dataclass(frozen=True)
class _Schema:
    fields: tuple[str, ...]
    date: str | None  # from '#Date:', used when there is no date field


# W3C field (lower case) -> (column, SQL over the value v). '-' is already NULL in v.
_MAP = {
    "c-ip": ("source_ip", "{v}"),
    "c-port": ("source_port", "try_cast({v} AS INTEGER)"),
    "s-ip": ("destination_ip", "{v}"),
    "s-port": ("destination_port", "try_cast({v} AS INTEGER)"),
    "cs-method": ("http_request_method", "{v}"),
    "cs-uri-stem": ("url_path", "{v}"),
    "cs-uri-query": ("url_query", "{v}"),
    "cs-uri": ("url_original", "{v}"),
    "cs-version": ("http_version", "{v}"),
    "sc-status": ("http_response_status_code", "try_cast({v} AS INTEGER)"),
    "sc-bytes": ("http_response_body_bytes", "try_cast({v} AS BIGINT)"),
    "cs(user-agent)": ("user_agent_original", "replace({v}, '+', ' ')"),
    "cs(referer)": ("http_request_referrer", "{v}"),
    "cs-host": ("url_domain", "{v}"),
    "cs(host)": ("url_domain", "{v}"),
    "cs-username": ("user_name", "{v}"),
}

_DATA = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} \S")


@register
class W3C(DirectiveFormat):
    """IIS W3C extended log (``#Software/#Version/#Date/#Fields`` headers, space-separated).

    Source fields -> columns: date + time (UTC) -> ts; c-ip -> source_ip; c-port -> source_port;
    s-ip -> destination_ip; s-port -> destination_port; cs-method -> http_request_method;
    cs-uri-stem -> url_path; cs-uri-query -> url_query (url_original = stem ?query, or cs-uri);
    cs-version -> http_version; sc-status -> http_response_status_code; sc-bytes ->
    http_response_body_bytes; cs(User-Agent) (``+`` = space) -> user_agent_original;
    cs(Referer) -> http_request_referrer; cs-host -> url_domain; cs-username -> user_name.
    Other fields stay in ``raw``. ``-`` means empty (NULL).

    ``#Fields:`` may change anywhere (header blocks repeat after restarts); every ``#`` line is
    a comment line. Data lines before any ``#Fields:``, lines whose field count differs from
    ``#Fields:`` and impossible dates are quarantined with the reason.
    """

    name = "w3c"

    @classmethod
    def sniff(cls, lines: list[str]) -> float:
        if any(x.startswith(("#Fields:", "#Software:", "#Version:")) for x in lines[:20]):
            return 1.0
        # A header-less IIS file: recognised, so that its lines are quarantined with the reason.
        return 0.9 * sum(bool(_DATA.match(x)) for x in lines) / max(1, len(lines))

    def __init__(self) -> None:
        super().__init__()
        self._fields: tuple[str, ...] | None = None
        self._date: str | None = None

    def directive(self, text: str) -> _Schema | None:
        key, _, value = text.partition(":")
        key = key.strip().lower()
        if key == "#fields":
            self._fields = tuple(f.lower() for f in value.split())
        elif key == "#date":
            d = value.strip().split(" ")[0]
            if d == self._date:
                return None
            self._date = d
        else:
            return None
        return _Schema(self._fields, self._date) if self._fields is not None else None

    def schema_part(self, con, schema: _Schema | None, src: str) -> Part:
        if schema is None:
            return Part("http", f"""SELECT n AS source_line, line AS raw, NULL::TIMESTAMP AS ts,
                'W3C data line before any #Fields: header' AS _reason FROM {src}""")
        pos = {f: i + 1 for i, f in enumerate(schema.fields)}
        cols: dict[str, str] = {}
        for f, i in pos.items():
            if f in _MAP:
                col, expr = _MAP[f]
                cols.setdefault(col, expr.format(v=f"ts_dash(f[{i}])"))
        if "url_original" not in cols and "url_path" in cols:
            q = cols.get("url_query", "NULL")
            cols["url_original"] = f"{cols['url_path']} || coalesce('?' || {q}, '')"
        if "url_original" in cols:
            cols.setdefault("url_path", f"ts_url_path({cols['url_original']})")
            cols.setdefault("url_query", f"ts_url_query({cols['url_original']})")
        if "date" in pos and "time" in pos:
            ts = f"try_cast(f[{pos['date']}] || ' ' || f[{pos['time']}] AS TIMESTAMP)"
        elif "time" in pos and schema.date:
            ts = f"try_cast({sql_str(schema.date)} || ' ' || f[{pos['time']}] AS TIMESTAMP)"
        else:
            ts = None
        k = len(schema.fields)
        bad_ts = "WHEN ts IS NULL THEN 'invalid timestamp'" if ts else ""
        select = ", ".join(f"{e} AS {c}" for c, e in cols.items())
        return Part("http", f"""
            SELECT n AS source_line, line AS raw, ts,
                CASE WHEN len(f) <> {k} THEN 'W3C: ' || len(f) || ' fields, #Fields declares {k}'
                     {bad_ts} END AS _reason
                {', ' + select if select else ''}
            FROM (SELECT *, {ts or 'NULL::TIMESTAMP'} AS ts
                  FROM (SELECT n, line, string_split(line, ' ') AS f FROM {src}))""")
