"""IOC lists against attacking addresses, and the indicators found in attacks' payloads.

    con.sql(address_matches_sql("_ts_src"))     # _ts_src: ip, ip_num
    con.sql(payloads_sql(have))                 # one row per (detected event, indicator)
    con.sql(payload_matches_sql("_ts_payload")) # the IOC lists' word on each payload indicator

An address matches an ``ip`` entry equal to it or a ``cidr`` entry that holds it (a hash join
and a range join over the IP numbers, both vectorised). A payload indicator is a URL, domain or
address named in a detected event: an exploit request's URI or body (the download URL of a
GPON or Drupal payload), the text the PowerShell analyzer recovered (its IOCs), a document's
macros (olevba's IOCs). A URL matches a ``url`` entry with the same text (a trailing ``/``
aside), or through its host: a ``domain`` entry equal to the host or a parent of it, an
address entry holding the host's address; a domain matches the same way.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from threatscope.sqlfn import sql_str

# URLs in attack text. '+' ends one: in a logged request it is an encoded space
# (`wget+http://x/a.sh+-O+-`), and quotes, brackets and shell metacharacters end it too.
URL_RE = r"(?i)\b(?:https?|ftp|tftp)://[^\s'\"<>`|;,()\[\]{}\\+^]+"
# what a name needs to be a domain: dot-separated labels, an alphabetic last label that is
# not a file extension (olevba lists 'powershell.exe' among IOCs)
_DOMAIN_RE = r"^(?i)([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{1,62}$"
_FILE_EXT = ("exe", "dll", "ps1", "psm1", "bat", "cmd", "vbs", "vbe", "js", "jse", "hta", "jar",
             "zip", "rar", "7z", "doc", "docx", "docm", "xls", "xlsx", "xlsm", "ppt", "pptx",
             "txt", "lnk", "scr", "tmp", "dat", "bin", "sh", "py", "pl", "msi", "iso", "img",
             "png", "jpg", "gif", "sct", "wsf", "ocx", "sys", "log", "ini", "cfg", "xml", "php",
             "asp", "aspx", "jsp", "html", "htm", "json", "csv", "db")
# names of no one's network
_LOCAL = ("local", "lan", "internal", "localdomain", "localhost", "home", "corp", "intranet")


@cache
def benign_hosts() -> tuple[str, ...]:
    """Hosts that attack text names without being part of the attack (``data/benign_hosts.txt``:
    XML namespaces of SOAP exploit bodies and the like)."""
    text = resources.files("threatscope.enrich").joinpath("data/benign_hosts.txt").read_text("utf-8")
    return tuple(ln.strip().lower() for ln in text.splitlines()
                 if ln.strip() and not ln.startswith("#"))


def cidr_shifts(con, ioc: str = "ioc") -> list[int]:
    """The host bits of the networks ``ioc`` lists (8 for a /24), one per distinct size."""
    rows = con.execute(f"""SELECT DISTINCT ip_last_num - ip_first_num + 1 FROM {ioc}
                           WHERE ioc_type = 'cidr' AND ip_first_num IS NOT NULL""").fetchall()
    return sorted({int(n).bit_length() - 1 for (n,) in rows if n})


def address_matches_sql(src: str, shifts: list[int], ioc: str = "ioc") -> str:
    """Per address of ``src`` (ip, ip_num) that an IOC list names: ioc_matches
    (``feed:value``), ioc_families, ioc_first_seen, ioc_last_seen. ``shifts``: the networks'
    host bits (:func:`cidr_shifts`): an address is in a network when both agree above them,
    one hash join per network size rather than a range join."""
    nets = "".join(f"""
             UNION ALL
             SELECT s.ip, i.* FROM {src} s JOIN i ON i.ioc_type = 'cidr'
                  AND i.ip_last_num - i.ip_first_num = {(1 << k) - 1}::UHUGEINT
                  AND (s.ip_num >> {k}) = (i.ip_first_num >> {k})""" for k in shifts)
    return f"""
    WITH i AS (SELECT ioc_type, value, ip_first_num, ip_last_num, feed, malware_family,
                      first_seen, last_seen
               FROM {ioc} WHERE ioc_type IN ('ip', 'cidr') AND ip_first_num IS NOT NULL),
    hits AS (SELECT s.ip, i.* FROM {src} s JOIN i ON i.ioc_type = 'ip'
                                              AND i.ip_first_num = s.ip_num{nets})
    SELECT ip, list_sort(list_distinct(list(feed || ':' || value))) AS ioc_matches,
           list_sort(list_distinct(list(malware_family) FILTER (
               WHERE malware_family IS NOT NULL))) AS ioc_families,
           min(first_seen) AS ioc_first_seen, max(last_seen) AS ioc_last_seen
    FROM hits GROUP BY ip"""


def indicator_sql(text: str) -> str:
    """SQL: (indicator_type, value, host) of one candidate string, NULL type when it is none
    (a file path, a private name, a bare word)."""
    ext = ", ".join(f"'{e}'" for e in _FILE_EXT)
    local = ", ".join(f"'{e}'" for e in _LOCAL)
    host = ("lower(trim(regexp_extract(v, '^[a-zA-Z][a-zA-Z0-9+.-]*://(?:[^@/]*@)?"
            r"(\[[0-9a-fA-F:.]+\]|[^/:?#\[]+)', 1), '[]'))")
    return f"""(SELECT CASE
        WHEN regexp_matches(v, '(?i)^(https?|ftp|tftp)://') THEN
            CASE WHEN {host} <> '' THEN {{'indicator_type': 'url', 'value': v, 'host': {host}}} END
        WHEN ts_ip_num(v) IS NOT NULL THEN
            {{'indicator_type': CASE WHEN contains(v, ':') THEN 'ipv6' ELSE 'ipv4' END,
              'value': v, 'host': v}}
        WHEN regexp_matches(v, '{_DOMAIN_RE}')
             AND split_part(lower(v), '.', -1) NOT IN ({ext})
             AND split_part(lower(v), '.', -1) NOT IN ({local}) THEN
            {{'indicator_type': 'domain', 'value': lower(v), 'host': lower(v)}}
        END FROM (SELECT trim({text}, ' \t\r\n.,;:''"') AS v))"""


def payloads_sql(have: set[str]) -> str:
    """One row per (detected event, indicator named in it): org_id, ts, file_id, source_line,
    origin ('http' | 'powershell' | 'document'), indicator_type, value, host. ``have``: the
    relations present (``detection``, ``powershell``, ``document``, ``http``)."""
    parts = []
    if {"detection", "http"} <= have:
        # exploit requests only (a campaign or a CVE): their payloads name download URLs
        parts.append(f"""
            SELECT h.org_id, h.ts, h.file_id, h.source_line, 'http' AS origin,
                   unnest(list_distinct(regexp_extract_all(
                       coalesce(h.url_decoded, '') || ' ' ||
                       coalesce(ts_url_decode(h.http_request_body_content), ''),
                       '{URL_RE.replace("'", "''")}'))) AS s
            FROM http h SEMI JOIN (SELECT DISTINCT file_id, source_line FROM detection
                                   WHERE event_kind = 'http' AND (campaign IS NOT NULL
                                         OR len(coalesce(cves, [])) > 0)) d
                 ON d.file_id = h.file_id AND d.source_line = h.source_line""")
    if "powershell" in have:
        parts.append("""
            SELECT org_id, ts, file_id, source_line, 'powershell' AS origin, unnest(iocs) AS s
            FROM powershell WHERE len(iocs) > 0""")
    if "document" in have:
        parts.append("""
            SELECT org_id, ts, file_id, source_line, 'document' AS origin,
                   unnest(string_split(vba_iocs, chr(10))) AS s
            FROM document WHERE vba_iocs IS NOT NULL""")
    if not parts:
        return ("SELECT NULL::VARCHAR AS org_id, NULL::TIMESTAMP AS ts, NULL::VARCHAR AS file_id, "
                "NULL::BIGINT AS source_line, NULL::VARCHAR AS origin, NULL::VARCHAR AS "
                "indicator_type, NULL::VARCHAR AS value, NULL::VARCHAR AS host WHERE false")
    benign = ", ".join(sql_str(h) for h in benign_hosts())
    return f"""
    SELECT org_id, ts, file_id, source_line, origin, i.indicator_type, i.value, i.host
    FROM (SELECT *, {indicator_sql('s')} AS i FROM ({' UNION ALL '.join(parts)}))
    WHERE i.indicator_type IS NOT NULL AND i.host NOT IN ({benign})
          AND NOT list_bool_or([ends_with(i.host, '.' || b) FOR b IN [{benign}]])"""


def payload_matches_sql(payload: str, ioc: str = "ioc") -> str:
    """Per distinct (indicator_type, value) of ``payload`` that an IOC list names: ioc_feeds,
    ioc_families, ioc_first_seen, ioc_last_seen."""
    return f"""
    WITH p AS (SELECT DISTINCT indicator_type, value, host, ts_ip_num(host) AS host_num
               FROM {payload}),
    hits AS (
        SELECT p.indicator_type, p.value, i.feed, i.malware_family, i.first_seen, i.last_seen
        FROM p JOIN {ioc} i ON i.ioc_type = 'url' AND p.indicator_type = 'url'
                           AND rtrim(i.value, '/') = rtrim(p.value, '/')
        UNION ALL
        SELECT p.indicator_type, p.value, i.feed, i.malware_family, i.first_seen, i.last_seen
        FROM p JOIN {ioc} i ON i.ioc_type = 'domain'
                           AND (p.host = i.value OR ends_with(p.host, '.' || i.value))
        UNION ALL
        SELECT p.indicator_type, p.value, i.feed, i.malware_family, i.first_seen, i.last_seen
        FROM p JOIN {ioc} i ON i.ioc_type IN ('ip', 'cidr') AND p.host_num IS NOT NULL
                           AND p.host_num >= i.ip_first_num AND p.host_num <= i.ip_last_num)
    SELECT indicator_type, value, list_sort(list_distinct(list(feed))) AS ioc_feeds,
           list_sort(list_distinct(list(malware_family) FILTER (
               WHERE malware_family IS NOT NULL))) AS ioc_families,
           min(first_seen) AS ioc_first_seen, max(last_seen) AS ioc_last_seen
    FROM hits GROUP BY ALL"""
