"""Which Sigma log sources threatscope has data for, and how their field names map to columns.

This module is data: a logsource -> table list and, per table, a Sigma field -> column mapping
that is turned into a pySigma :class:`ProcessingPipeline` (field mapping transformations guarded
by logsource conditions). The compiler refuses fields that map to no column.

    pipeline = processing_pipeline()
    pipeline.apply(rule)            # rule's field names are now column names
"""

from __future__ import annotations

from sigma.processing.conditions import LogsourceCondition
from sigma.processing.pipeline import ProcessingItem, ProcessingPipeline
from sigma.processing.transformations import FieldMappingTransformation

from threatscope import schema

# (logsource selector, table): the first selector whose given keys all equal the rule's
# logsource wins. Only the keys present in a selector are compared.
LOGSOURCE_TABLES: list[tuple[dict[str, str], str]] = [
    ({"category": "webserver"}, "http"),
    ({"category": "proxy"}, "http"),
]

# Sigma field name -> column of the `http` table (docs/architecture.md). Column names themselves
# are also accepted (e.g. `url_decoded`), and `http.request.headers.<name>` is resolved by the
# compiler to that header's value in the `http_request_headers` JSON.
HTTP_FIELDS: dict[str, str] = {
    # W3C / IIS names
    "cs-method": "http_request_method",
    "cs-uri": "url_original",
    "cs-uri-stem": "url_path",
    "cs-uri-query": "url_query",
    "cs-user-agent": "user_agent_original",
    "c-useragent": "user_agent_original",
    "cs-referer": "http_request_referrer",
    "sc-status": "http_response_status_code",
    "c-ip": "source_ip",
    "cs-host": "url_domain",
    "cs-version": "http_version",
    "cs-body": "http_request_body_content",
    "cs-username": "user_name",
    "sc-bytes": "http_response_body_bytes",
    "s-ip": "destination_ip",
    "s-port": "destination_port",
    # proxy log names (SigmaHQ `category: proxy`): the request target is our url_original
    "c-uri": "url_original",
    "c-uri-stem": "url_path",
    "c-uri-query": "url_query",
    "r-dns": "url_domain",
    "dst_ip": "destination_ip",
    # header shorthands used by SigmaHQ (resolved as http.request.headers.<name>)
    "cs-cookie": "http.request.headers.cookie",
    "cs-content-type": "http.request.headers.content-type",
    # ECS names
    "http.request.method": "http_request_method",
    "url.original": "url_original",
    "url.path": "url_path",
    "url.query": "url_query",
    "url.decoded": "url_decoded",
    "url.domain": "url_domain",
    "user_agent.original": "user_agent_original",
    "http.request.referrer": "http_request_referrer",
    "http.response.status_code": "http_response_status_code",
    "http.response.body.bytes": "http_response_body_bytes",
    "http.version": "http_version",
    "http.request.body.content": "http_request_body_content",
    "http.request.headers": "http_request_headers",
    "source.ip": "source_ip",
    "src_ip": "source_ip",
    "source.port": "source_port",
    "destination.ip": "destination_ip",
    "destination.port": "destination_port",
    "user.name": "user_name",
}

TABLE_FIELDS: dict[str, dict[str, str]] = {"http": HTTP_FIELDS}

# Columns a keyword rule (values without a field) searches, per table. For `http` the decoded URL
# is searched too: an access-log line keeps the request percent-encoded in `raw`, and keyword
# rules are written against the attack text (`union select`, `<script>`), not its encoding.
KEYWORD_COLUMNS: dict[str, list[str]] = {"http": ["raw", "url_decoded"], "alert": ["raw"]}

# Text columns holding an IP whose numeric twin makes `|cidr` a range test.
IP_NUM_COLUMNS: dict[str, str] = {"source_ip": "source_ip_num"}

HEADER_PREFIX = "http.request.headers."


def table_for(category: str | None, product: str | None, service: str | None) -> str | None:
    """The table holding events of this logsource, or None when threatscope has no such data."""
    have = {"category": category, "product": product, "service": service}
    for selector, table in LOGSOURCE_TABLES:
        if all(have.get(k) == v for k, v in selector.items()):
            return table
    return None


def columns(table: str) -> dict[str, str]:
    """Column name -> DuckDB type of a table (an event kind of schema.KINDS)."""
    return dict(schema.KINDS[table])


def processing_pipeline() -> ProcessingPipeline:
    """The pySigma pipeline mapping Sigma field names to threatscope columns."""
    items = []
    for selector, table in LOGSOURCE_TABLES:
        mapping = TABLE_FIELDS.get(table)
        if not mapping:
            continue
        items.append(
            ProcessingItem(
                identifier=f"threatscope-{table}-{'-'.join(selector.values())}",
                transformation=FieldMappingTransformation(dict(mapping)),
                rule_conditions=[LogsourceCondition(**selector)],
            )
        )
    return ProcessingPipeline(name="threatscope", items=items)
