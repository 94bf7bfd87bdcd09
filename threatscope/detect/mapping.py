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
from sigma.processing.transformations import (
    AddConditionTransformation,
    FieldMappingTransformation,
    ValueListPlaceholderTransformation,
)

from threatscope import schema

SYSMON, POWERSHELL = schema.SYSMON, schema.POWERSHELL
# Windows log sources read from `windows_event`, narrowed by the event's channel and id (as
# Sigma's Windows taxonomy defines them): category -> conditions on Sigma field names.
WINDOWS_CATEGORIES = schema.WINDOWS_CATEGORIES

# Sigma's Windows services -> the channel their events are logged in.
WINDOWS_SERVICES: dict[str, str | list[str]] = {
    "security": "Security", "system": "System", "application": "Application",
    "sysmon": SYSMON, "powershell": POWERSHELL, "powershell-classic": "Windows PowerShell",
    "taskscheduler": "Microsoft-Windows-TaskScheduler/Operational",
    "wmi": "Microsoft-Windows-WMI-Activity/Operational",
    "windefend": "Microsoft-Windows-Windows Defender/Operational",
    "bits-client": "Microsoft-Windows-Bits-Client/Operational",
    "dns-server": "DNS Server",
    "dns-client": "Microsoft-Windows-DNS Client Events/Operational",
    "driver-framework": "Microsoft-Windows-DriverFrameworks-UserMode/Operational",
    "firewall-as": "Microsoft-Windows-Windows Firewall With Advanced Security/Firewall",
    "codeintegrity-operational": "Microsoft-Windows-CodeIntegrity/Operational",
    "ntlm": "Microsoft-Windows-NTLM/Operational",
    "terminalservices-localsessionmanager":
        "Microsoft-Windows-TerminalServices-LocalSessionManager/Operational",
    "smbclient-security": "Microsoft-Windows-SmbClient/Security",
    "openssh": "OpenSSH/Operational",
    "msexchange-management": "MSExchange Management",
    "printservice-admin": "Microsoft-Windows-PrintService/Admin",
    "printservice-operational": "Microsoft-Windows-PrintService/Operational",
    "applocker": ["Microsoft-Windows-AppLocker/MSI and Script",
                  "Microsoft-Windows-AppLocker/EXE and DLL",
                  "Microsoft-Windows-AppLocker/Packaged app-Deployment",
                  "Microsoft-Windows-AppLocker/Packaged app-Execution"],
    "lsa-server": "Microsoft-Windows-LSA/Operational",
    "capi2": "Microsoft-Windows-CAPI2/Operational",
    "shell-core": "Microsoft-Windows-Shell-Core/Operational",
    "diagnosis-scripted": "Microsoft-Windows-Diagnosis-Scripted/Operational",
    "appxdeployment-server": "Microsoft-Windows-AppXDeploymentServer/Operational",
    "vhdmp": "Microsoft-Windows-VHDMP/Operational",
    "ldap_debug": "Microsoft-Windows-LDAP-Client/Debug",
    "ldap": "Microsoft-Windows-LDAP-Client/Debug",
    "appmodel-runtime": "Microsoft-Windows-AppModel-Runtime/Admin",
    "appxpackaging-om": "Microsoft-Windows-AppxPackaging/Operational",
    "certificateservicesclient-lifecycle-system":
        "Microsoft-Windows-CertificateServicesClient-Lifecycle-System/Operational",
    "microsoft-servicebus-client": "Microsoft-ServiceBus-Client",
    "smbserver-connectivity": "Microsoft-Windows-SMBServer/Connectivity",
    "iis-configuration": "Microsoft-IIS-Configuration/Operational",
    "security-mitigations": ["Microsoft-Windows-Security-Mitigations/Kernel Mode",
                             "Microsoft-Windows-Security-Mitigations/User Mode"],
}

# (logsource selector, table, conditions the rule gets): the first selector whose given keys
# all equal the rule's logsource wins. Only the keys present in a selector are compared.
LOGSOURCE_TABLES: list[tuple[dict[str, str], str, dict]] = [
    ({"category": "webserver"}, "http", {}),
    ({"category": "proxy"}, "http", {}),
    ({"category": "process_creation", "product": "windows"}, "process_creation", {}),
    ({"category": "ps_script", "product": "windows"}, "ps_script", {}),
    # what the PowerShell analyzer recovered from a command line or script block
    ({"category": "ps_deobfuscated", "product": "windows"}, "powershell", {}),
    *(({"category": c, "product": "windows"}, "windows_event", cond)
      for c, cond in WINDOWS_CATEGORIES.items()),
    *(({"product": "windows", "service": s}, "windows_event", {"Channel": ch})
      for s, ch in WINDOWS_SERVICES.items()),
    ({"category": "office_document"}, "document", {}),
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

# Windows events: Sigma uses the event's own field names (EventData), plus EventID, Channel,
# Provider_Name and Computer from its System part. Names not listed are looked up in event_data.
WINDOWS_FIELDS: dict[str, str] = {
    "EventID": "event_id",
    "Channel": "channel",
    "Provider_Name": "provider",
    "Computer": "computer",
    "ComputerName": "computer",
    "Hostname": "computer",
}

PROCESS_CREATION_FIELDS: dict[str, str] = WINDOWS_FIELDS | {
    "Image": "process_executable",
    "NewProcessName": "process_executable",
    "CommandLine": "process_command_line",
    "ProcessId": "process_pid",
    "ParentImage": "process_parent_executable",
    "ParentProcessName": "process_parent_executable",
    "ParentCommandLine": "process_parent_command_line",
    "ParentProcessId": "process_parent_pid",
    "OriginalFileName": "process_pe_original_file_name",
    "CurrentDirectory": "process_working_directory",
    "IntegrityLevel": "process_integrity_level",
    "Hashes": "process_hash",
    "Company": "process_pe_company",
    "Description": "process_pe_description",
    "Product": "process_pe_product",
    "FileVersion": "process_pe_file_version",
    "User": "user_name",
    "ParentUser": "process_parent_user",
    "LogonId": "logon_id",
}

PS_SCRIPT_FIELDS: dict[str, str] = WINDOWS_FIELDS | {
    "ScriptBlockText": "script_block_text",
    "ScriptBlockId": "script_block_id",
    "MessageNumber": "message_number",
    "MessageTotal": "message_total",
    "Path": "script_path",
}

# Office documents (olevba's analysis): ECS file fields, and the column names themselves.
DOCUMENT_FIELDS: dict[str, str] = {
    "file.name": "file_name",
    "file.extension": "file_extension",
    "file.size": "file_size",
    "file.hash.sha256": "file_hash_sha256",
}

TABLE_FIELDS: dict[str, dict[str, str]] = {
    "http": HTTP_FIELDS, "windows_event": WINDOWS_FIELDS,
    "process_creation": PROCESS_CREATION_FIELDS, "ps_script": PS_SCRIPT_FIELDS,
    "document": DOCUMENT_FIELDS,
    "powershell": {"ScriptBlockText": "deobfuscated", "CommandLine": "deobfuscated",
                   "Original": "text"},
}

# Tables with a JSON object column of further fields: (that column, the Sigma field prefix
# naming one of its fields ('' = any field that is not a column), whether names are lower-cased).
JSON_FIELDS: dict[str, tuple[str, str, bool]] = {
    "http": ("http_request_headers", "http.request.headers.", True),
    "windows_event": ("event_data", "", False),
    "process_creation": ("event_data", "", False),
    "ps_script": ("event_data", "", False),
}

# Columns a keyword rule (values without a field) searches, per table. For `http` the decoded URL
# is searched too: an access-log line keeps the request percent-encoded in `raw`, and keyword
# rules are written against the attack text (`union select`, `<script>`), not its encoding.
KEYWORD_COLUMNS: dict[str, list[str]] = {
    "http": ["raw", "url_decoded"], "alert": ["raw"], "windows_event": ["raw"],
    "process_creation": ["raw"], "ps_script": ["raw"], "document": ["raw", "vba_code"],
    "powershell": ["deobfuscated"],
}

# Text columns holding an IP whose numeric twin makes `|cidr` a range test.
IP_NUM_COLUMNS: dict[str, str] = {"source_ip": "source_ip_num"}



def table_for(category: str | None, product: str | None, service: str | None) -> str | None:
    """The table holding events of this logsource, or None when threatscope has no such data."""
    have = {"category": category, "product": product, "service": service}
    for selector, table, _ in LOGSOURCE_TABLES:
        if all(have.get(k) == v for k, v in selector.items()):
            return table
    return None


def columns(table: str) -> dict[str, str]:
    """Column name -> DuckDB type of a table (schema.RULE_TABLES)."""
    return dict(schema.RULE_TABLES[table])


def processing_pipeline(placeholders: dict[str, list[str]] | None = None) -> ProcessingPipeline:
    """The pySigma pipeline mapping Sigma field names to threatscope columns (and ``|expand``
    placeholders to their ``placeholders`` values; one without a value is left for the
    compiler to report)."""
    # placeholders first, then the log source's own conditions (Channel, EventID: Sigma
    # names), then the mapping of every field name to a column
    items = []
    if placeholders:
        items.append(ProcessingItem(
            identifier="threatscope-placeholders",
            transformation=ValueListPlaceholderTransformation(include=sorted(placeholders))))
    for selector, table, conditions in LOGSOURCE_TABLES:
        name = f"threatscope-{table}-{'-'.join(selector.values())}"
        if conditions:
            items.append(ProcessingItem(
                identifier=f"{name}-conditions",
                transformation=AddConditionTransformation(dict(conditions)),
                rule_conditions=[LogsourceCondition(**selector)],
            ))
        if mapping := TABLE_FIELDS.get(table):
            items.append(ProcessingItem(
                identifier=name,
                transformation=FieldMappingTransformation(dict(mapping)),
                rule_conditions=[LogsourceCondition(**selector)],
            ))
    return ProcessingPipeline(name="threatscope", items=items, vars=dict(placeholders or {}))
