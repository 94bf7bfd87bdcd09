"""Column contracts between the stages.

Every event row carries the common columns, then its kind's columns. Names follow the Elastic
Common Schema with dots as underscores. IPs are kept as text (``source_ip``) and as a number
(``source_ip_num``, UHUGEINT: IPv4 mapped into ``::ffff:0:0/96`` so v4 and v6 share one range
space) so that CIDR tests and range joins are vectorised.

The lake stores one Parquet dataset per kind, hive-partitioned by ``org_id``:
``lake/<kind>/org_id=<org>/<file_id>_<n>.parquet`` (one file per input file, organisation and
ingest batch; ``ts``/``event_date`` row-group statistics prune periods, so a month-long log is
not split into thirty small files that every scan pays for). The file name starts
with the ingest manifest's ``file_id`` so that an interrupted ingest can be rolled back by name;
the files do not store ``file_id`` (ingest learns it only after the last line), the workspace
view derives it from that name.
"""

from __future__ import annotations

import pyarrow as pa

# Columns every event kind has, in order. `org_id` is the partition column.
COMMON: list[tuple[str, str]] = [
    ("org_id", "VARCHAR"),
    ("ts", "TIMESTAMP"),  # UTC, naive
    ("event_date", "DATE"),  # UTC day of ts
    ("event_kind", "VARCHAR"),  # 'http', 'alert', ...
    ("file_id", "VARCHAR"),  # ingest_manifest.file_id (the view reads it from the file name)
    ("source_file", "VARCHAR"),  # path as given to ingest (archive member appended after '!')
    ("source_line", "BIGINT"),  # 1-based line number in the decompressed stream
    ("raw", "VARCHAR"),  # the original line, searched by Sigma keyword rules
]

# One row per HTTP request, from access logs (W3C, combined, common) or whole-request records
# (http-jsonl, Suricata EVE http, Zeek http.log). Columns a format does not have are NULL.
HTTP: list[tuple[str, str]] = COMMON + [
    ("source_ip", "VARCHAR"),
    ("source_ip_num", "UHUGEINT"),
    ("source_port", "INTEGER"),
    ("destination_ip", "VARCHAR"),
    ("destination_port", "INTEGER"),
    ("url_domain", "VARCHAR"),  # Host header / cs-host / server name
    ("http_request_method", "VARCHAR"),  # as sent, not upper-cased
    ("url_original", "VARCHAR"),  # request target as logged: path + '?' + query, still encoded
    ("url_path", "VARCHAR"),  # encoded path (before '?')
    ("url_query", "VARCHAR"),  # encoded query (after '?', without it), NULL when absent
    ("url_decoded", "VARCHAR"),  # url_decode(url_original), '+' kept: what rules usually match
    ("http_version", "VARCHAR"),  # e.g. 'HTTP/1.1'
    ("http_response_status_code", "INTEGER"),
    ("http_response_body_bytes", "BIGINT"),
    ("http_request_referrer", "VARCHAR"),
    ("user_agent_original", "VARCHAR"),
    ("user_name", "VARCHAR"),
    # JSON object text, header names lower-cased; NULL for access logs
    ("http_request_headers", "VARCHAR"),
    ("http_request_body_content", "VARCHAR"),  # request body as text; NULL for access logs
]

# Detections raised by the sensor itself (Suricata EVE `alert`): turned into detection rows.
ALERT: list[tuple[str, str]] = COMMON + [
    ("source_ip", "VARCHAR"),
    ("source_ip_num", "UHUGEINT"),
    ("destination_ip", "VARCHAR"),
    ("destination_port", "INTEGER"),
    ("signature_id", "BIGINT"),
    ("signature", "VARCHAR"),
    ("category", "VARCHAR"),
    ("severity", "INTEGER"),  # Suricata: 1 high .. 3 low
    ("cves", "VARCHAR[]"),  # from metadata cve / references
    ("url_original", "VARCHAR"),
    ("url_domain", "VARCHAR"),
    ("http_request_method", "VARCHAR"),
]

# One row per Windows event record (an EVTX file, or a JSON export of one), of any channel: the
# table every Windows Sigma rule can fall back on. ``raw`` is the record as JSON text.
WINDOWS_EVENT: list[tuple[str, str]] = COMMON + [
    ("channel", "VARCHAR"),  # e.g. 'Microsoft-Windows-Sysmon/Operational', 'Security'
    ("provider", "VARCHAR"),  # System/Provider Name
    ("event_id", "INTEGER"),
    ("record_id", "BIGINT"),  # EventRecordID
    ("computer", "VARCHAR"),
    ("user_id", "VARCHAR"),  # System/Security UserID (a SID)
    ("event_data", "VARCHAR"),  # JSON object: the EventData (or UserData) fields by name
]

# The system part of a Windows event and its data, repeated in each Sigma category table derived
# from it (a rule's field that has no column of its own is looked up in event_data).
_WINDOWS_SYSTEM = WINDOWS_EVENT[len(COMMON):]

# Process starts: Sysmon event 1 and Security 4688 (Sigma category `process_creation`).
PROCESS_CREATION: list[tuple[str, str]] = COMMON + _WINDOWS_SYSTEM + [
    ("process_executable", "VARCHAR"),  # Image | NewProcessName
    ("process_command_line", "VARCHAR"),  # CommandLine
    ("process_pid", "BIGINT"),  # ProcessId | NewProcessId (hex in 4688)
    ("process_parent_executable", "VARCHAR"),  # ParentImage | ParentProcessName
    ("process_parent_command_line", "VARCHAR"),  # ParentCommandLine
    ("process_parent_pid", "BIGINT"),  # ParentProcessId | ProcessId (4688: the creator)
    ("process_pe_original_file_name", "VARCHAR"),  # OriginalFileName
    ("process_working_directory", "VARCHAR"),  # CurrentDirectory
    ("process_integrity_level", "VARCHAR"),  # IntegrityLevel | MandatoryLabel (as its name)
    ("process_hash", "VARCHAR"),  # Hashes: 'SHA1=...,MD5=...'
    ("process_pe_company", "VARCHAR"),
    ("process_pe_description", "VARCHAR"),
    ("process_pe_product", "VARCHAR"),
    ("process_pe_file_version", "VARCHAR"),
    ("user_name", "VARCHAR"),  # User | SubjectDomainName\SubjectUserName
    ("process_parent_user", "VARCHAR"),  # ParentUser
    ("logon_id", "VARCHAR"),  # LogonId | SubjectLogonId
]

# PowerShell script blocks: event 4104 (Sigma category `ps_script`), one row per part of a block
# (a long block is logged over several events: message_number of message_total).
PS_SCRIPT: list[tuple[str, str]] = COMMON + _WINDOWS_SYSTEM + [
    ("script_block_text", "VARCHAR"),
    ("script_block_id", "VARCHAR"),
    ("message_number", "INTEGER"),
    ("message_total", "INTEGER"),
    ("script_path", "VARCHAR"),
]

# Sigma's other Windows log source categories: views over `windows_event` (made by the
# workspace, not stored twice; rules of these categories read `windows_event` with the same
# conditions). category -> the events (Sigma field conditions: Channel, EventID, EventType).
SYSMON = "Microsoft-Windows-Sysmon/Operational"
POWERSHELL = "Microsoft-Windows-PowerShell/Operational"
WINDOWS_CATEGORIES: dict[str, dict[str, str | int | list]] = {
    "process_termination": {"Channel": SYSMON, "EventID": 5},
    "driver_load": {"Channel": SYSMON, "EventID": 6},
    "image_load": {"Channel": SYSMON, "EventID": 7},
    "create_remote_thread": {"Channel": SYSMON, "EventID": 8},
    "raw_access_thread": {"Channel": SYSMON, "EventID": 9},
    "process_access": {"Channel": SYSMON, "EventID": 10},
    "file_event": {"Channel": SYSMON, "EventID": 11},
    "registry_add": {"Channel": SYSMON, "EventID": 12, "EventType": "CreateKey"},
    "registry_delete": {"Channel": SYSMON, "EventID": 12,
                        "EventType": ["DeleteKey", "DeleteValue"]},
    "registry_set": {"Channel": SYSMON, "EventID": 13},
    "registry_rename": {"Channel": SYSMON, "EventID": 14},
    "registry_event": {"Channel": SYSMON, "EventID": [12, 13, 14]},
    "create_stream_hash": {"Channel": SYSMON, "EventID": 15},
    "pipe_created": {"Channel": SYSMON, "EventID": [17, 18]},
    "wmi_event": {"Channel": SYSMON, "EventID": [19, 20, 21]},
    "dns_query": {"Channel": SYSMON, "EventID": 22},
    "file_delete": {"Channel": SYSMON, "EventID": [23, 26]},
    "file_change": {"Channel": SYSMON, "EventID": 2},
    "clipboard_capture": {"Channel": SYSMON, "EventID": 24},
    "file_executable_detected": {"Channel": SYSMON, "EventID": 29},
    "process_tampering": {"Channel": SYSMON, "EventID": 25},
    "sysmon_status": {"Channel": SYSMON, "EventID": [4, 16]},
    "sysmon_error": {"Channel": SYSMON, "EventID": 255},
    "network_connection": {"Channel": SYSMON, "EventID": 3},
    "ps_module": {"Channel": POWERSHELL, "EventID": 4103},
    "ps_classic_start": {"Channel": "Windows PowerShell", "EventID": 400},
    "ps_classic_provider_start": {"Channel": "Windows PowerShell", "EventID": 600},
    "ps_classic_script": {"Channel": "Windows PowerShell", "EventID": 800},
}

# The columns of those views besides windows_event's: ECS name -> the event data field.
_PROCESS = {"process_executable": "Image", "process_pid": "ProcessId", "user_name": "User"}
_REGISTRY = _PROCESS | {"registry_event_type": "EventType", "registry_path": "TargetObject",
                        "registry_data": "Details", "registry_new_name": "NewName"}
_FILE = _PROCESS | {"file_path": "TargetFilename", "file_created": "CreationUtcTime",
                    "file_hash": "Hashes"}
WINDOWS_CATEGORY_COLUMNS: dict[str, dict[str, str]] = {
    "process_termination": _PROCESS,
    "driver_load": {"file_path": "ImageLoaded", "file_hash": "Hashes", "file_signed": "Signed",
                    "file_signature": "Signature", "file_signature_status": "SignatureStatus"},
    "image_load": _PROCESS | {
        "dll_path": "ImageLoaded", "dll_hash": "Hashes", "dll_pe_original_file_name":
        "OriginalFileName", "dll_signed": "Signed", "dll_signature": "Signature",
        "dll_signature_status": "SignatureStatus"},
    "create_remote_thread": {
        "process_executable": "SourceImage", "process_pid": "SourceProcessId",
        "target_process_executable": "TargetImage", "target_process_pid": "TargetProcessId",
        "thread_start_address": "StartAddress", "thread_start_module": "StartModule",
        "thread_start_function": "StartFunction"},
    "raw_access_thread": _PROCESS | {"file_device": "Device"},
    "process_access": {
        "process_executable": "SourceImage", "process_pid": "SourceProcessId",
        "target_process_executable": "TargetImage", "target_process_pid": "TargetProcessId",
        "granted_access": "GrantedAccess", "call_trace": "CallTrace"},
    "file_event": _FILE,
    "registry_add": _REGISTRY, "registry_delete": _REGISTRY, "registry_set": _REGISTRY,
    "registry_rename": _REGISTRY, "registry_event": _REGISTRY,
    "create_stream_hash": _FILE | {"file_contents": "Contents"},
    "pipe_created": _PROCESS | {"pipe_name": "PipeName"},
    "wmi_event": {"wmi_operation": "Operation", "wmi_name": "Name", "wmi_query": "Query",
                  "wmi_destination": "Destination", "wmi_consumer": "Consumer",
                  "wmi_filter": "Filter", "user_name": "User"},
    "dns_query": _PROCESS | {"dns_question_name": "QueryName", "dns_status": "QueryStatus",
                             "dns_answers": "QueryResults"},
    "file_delete": _FILE | {"file_archived": "Archived"},
    "file_change": _FILE | {"file_previous_created": "PreviousCreationUtcTime"},
    "clipboard_capture": _PROCESS | {"clipboard_hash": "Hashes"},
    "file_executable_detected": _FILE,
    "process_tampering": _PROCESS | {"tamper_type": "Type"},
    "sysmon_status": {"sysmon_state": "State", "sysmon_version": "Version"},
    "sysmon_error": {"sysmon_error_id": "ID", "sysmon_error_description": "Description"},
    "network_connection": _PROCESS | {
        "network_transport": "Protocol", "network_initiated": "Initiated",
        "source_ip": "SourceIp", "source_port": "SourcePort",
        "source_hostname": "SourceHostname", "destination_ip": "DestinationIp",
        "destination_port": "DestinationPort", "destination_hostname": "DestinationHostname",
        "destination_port_name": "DestinationPortName"},
    "ps_module": {"powershell_context_info": "ContextInfo", "powershell_payload": "Payload"},
    # classic PowerShell events carry their fields as `Data` strings (HostApplication=...)
    "ps_classic_start": {"powershell_data": "Data"},
    "ps_classic_provider_start": {"powershell_data": "Data"},
    "ps_classic_script": {"powershell_data": "Data"},
}

# One row per Office document (OLE2 or OOXML file), analysed by oletools' olevba
# (ingest/formats/office.py). ``ts`` is the file's modification time; ``raw`` the analysis
# summary as JSON. Keyword lists hold one value a line (NULL when empty).
DOCUMENT: list[tuple[str, str]] = COMMON + [
    ("file_name", "VARCHAR"),  # base name of the file
    ("file_extension", "VARCHAR"),  # lower case, without the dot
    ("file_size", "BIGINT"),
    ("file_hash_sha256", "VARCHAR"),
    ("document_container", "VARCHAR"),  # 'ole' | 'ooxml'
    ("document_type", "VARCHAR"),  # e.g. 'MS Word 97 Document' (oletools' file type name)
    ("has_macros", "BOOLEAN"),  # a VBA project or Excel 4 (XLM) macros
    ("has_xlm_macros", "BOOLEAN"),
    ("vba_modules", "VARCHAR"),  # module file names: 'ThisDocument.cls', 'Module1.bas'
    ("vba_autoexec", "VARCHAR"),  # entry points run without the user: 'AutoOpen', 'Document_Open'
    ("vba_suspicious", "VARCHAR"),  # olevba keywords: 'Shell', 'CreateObject', 'Chr', ...
    ("vba_iocs", "VARCHAR"),  # URLs, IPs, executable file names found in the macros
    ("vba_code", "VARCHAR"),  # the macro source of all modules (bounded length)
]

# Intel: what is known about addresses and indicators, from no organisation's telemetry (the
# lake keeps it under ``org_id=`` NO_ORG; no organisation is registered for it).
NO_ORG = "-"

# One row per Shodan banner (one service of one host at one time), from `shodan download`
# banner exports, `shodan host` records (one row per banner of the record) and the Shodan API
# cache (enrich/shodan_api.py). ``ts`` is the banner's crawl time; ``raw`` the JSON line.
HOST_RECORD: list[tuple[str, str]] = COMMON + [
    ("ip", "VARCHAR"),  # canonical text; IPv4-mapped IPv6 as plain IPv4
    ("ip_num", "UHUGEINT"),
    ("port", "INTEGER"),
    ("transport", "VARCHAR"),  # 'tcp' | 'udp'
    ("module", "VARCHAR"),  # Shodan's crawler module (_shodan.module): 'ftp', 'http', ...
    ("product", "VARCHAR"),
    ("version", "VARCHAR"),
    ("os", "VARCHAR"),  # as Shodan names it: 'Windows Server 2008 R2', 'Windows 7 or 8', ...
    ("hostnames", "VARCHAR[]"),  # reverse DNS and other names of the host
    ("domains", "VARCHAR[]"),
    ("tags", "VARCHAR[]"),  # Shodan tags: 'cloud', 'vpn', 'self-signed', 'honeypot', ...
    ("cpe", "VARCHAR[]"),
    ("vulns", "VARCHAR[]"),  # CVE ids Shodan lists for the service
    ("as_org", "VARCHAR"),  # Shodan's org
    ("isp", "VARCHAR"),
    ("asn", "BIGINT"),
    ("country_code", "VARCHAR"),
    ("cloud_provider", "VARCHAR"),
    ("banner", "VARCHAR"),  # the service's banner text (`data`), 4 KiB at most
    ("record_type", "VARCHAR"),  # 'banner' (one banner a line) | 'host' (a host record)
]

# One row per indicator of an IOC list: abuse.ch Feodo Tracker (CSV, JSON) and URLhaus (CSV),
# plain lists of IPs, CIDRs, domains and URLs. ``ts`` is the indicator's first_seen.
IOC: list[tuple[str, str]] = COMMON + [
    ("ioc_type", "VARCHAR"),  # 'ip' | 'cidr' | 'domain' | 'url'
    ("value", "VARCHAR"),  # canonical: IP text, network/prefix, lower-case domain, URL as listed
    ("ip_first_num", "UHUGEINT"),  # ip and cidr: the range (schema number space)
    ("ip_last_num", "UHUGEINT"),
    ("port", "INTEGER"),
    ("url_domain", "VARCHAR"),  # url: its host, lower-case; domain: the domain
    ("malware_family", "VARCHAR"),  # lower-case key as detections name it: 'emotet', 'qakbot'
    ("threat", "VARCHAR"),  # 'botnet_cc', 'malware_download', ...
    ("status", "VARCHAR"),  # 'online' | 'offline' | ...
    ("feed", "VARCHAR"),  # 'feodotracker' | 'urlhaus' | 'list'
    ("first_seen", "TIMESTAMP"),
    ("last_seen", "TIMESTAMP"),  # last_online where the feed says it
    ("tags", "VARCHAR[]"),
    ("reference", "VARCHAR"),  # e.g. the URLhaus page of the entry
]

INTEL_KINDS: dict[str, list[tuple[str, str]]] = {"host_record": HOST_RECORD, "ioc": IOC}

KINDS: dict[str, list[tuple[str, str]]] = {
    "http": HTTP, "alert": ALERT, "windows_event": WINDOWS_EVENT,
    "process_creation": PROCESS_CREATION, "ps_script": PS_SCRIPT, "document": DOCUMENT,
    **INTEL_KINDS,
}

# How the lake stores each SQL type in Parquet (no 128-bit integer there: the IP numbers are
# DECIMAL(38,0), read back as UHUGEINT by the workspace views).
ARROW_TYPES: dict[str, pa.DataType] = {
    "VARCHAR": pa.string(), "TIMESTAMP": pa.timestamp("us"), "DATE": pa.date32(),
    "BIGINT": pa.int64(), "INTEGER": pa.int32(), "UHUGEINT": pa.decimal128(38, 0),
    "VARCHAR[]": pa.list_(pa.string()), "BOOLEAN": pa.bool_(), "DOUBLE": pa.float64(),
}

# One row per (event, rule) match. Written by detect to detection.parquet (the view `detection`).
DETECTION: list[tuple[str, str]] = [
    ("org_id", "VARCHAR"),
    ("ts", "TIMESTAMP"),
    ("src_ip", "VARCHAR"),
    ("event_kind", "VARCHAR"),
    ("file_id", "VARCHAR"),
    ("source_file", "VARCHAR"),
    ("source_line", "BIGINT"),
    ("rule_id", "VARCHAR"),  # Sigma rule id, or 'suricata:<sid>'
    ("title", "VARCHAR"),
    ("severity", "VARCHAR"),  # informational|low|medium|high|critical
    ("cves", "VARCHAR[]"),  # upper-case 'CVE-2018-7600'
    ("attack_techniques", "VARCHAR[]"),  # upper-case 'T1190', 'T1059.001'
    ("product", "VARCHAR"),  # e.g. 'drupal', 'iis', 'weblogic', 'gpon'
    ("campaign", "VARCHAR"),  # campaign key, e.g. 'drupalgeddon2'; NULL for generic families
    ("family", "VARCHAR"),  # generic attack family: 'sqli', 'xss', 'lfi', 'scanner', ...
    ("malware_family", "VARCHAR"),
    ("detector", "VARCHAR"),  # 'sigma' | 'suricata' | analyzer name
    ("evidence", "VARCHAR"),  # short text shown to an analyst (e.g. the matched URI)
]

# One row per PowerShell command line or script block of the lake, as the PowerShell analyzer
# saw it (detect/powershell.py). Written by detect to powershell.parquet (the view `powershell`).
POWERSHELL_ANALYSIS: list[tuple[str, str]] = [
    ("org_id", "VARCHAR"),
    ("ts", "TIMESTAMP"),
    ("event_kind", "VARCHAR"),  # process_creation | ps_script
    ("file_id", "VARCHAR"),
    ("source_file", "VARCHAR"),
    ("source_line", "BIGINT"),
    ("source", "VARCHAR"),  # 'command_line' | 'script_block' (a block logged in parts: whole)
    ("text", "VARCHAR"),  # as logged (64K characters at most)
    ("obfuscated", "BOOLEAN"),
    ("score", "DOUBLE"),  # the classifier's probability that the text is obfuscated
    ("techniques", "VARCHAR[]"),  # what the deobfuscator undid: 'encodedcommand', 'concat', ...
    ("layers", "INTEGER"),
    ("deobfuscated", "VARCHAR"),  # the text recovered (64K characters at most)
    ("iocs", "VARCHAR[]"),  # URLs, domains, IPs, file paths found in it
    ("truncated", "BOOLEAN"),  # a time, depth or size bound cut the deobfuscation short
    ("reason", "VARCHAR"),  # which bound, or why a payload is not recoverable
    ("family", "VARCHAR"),  # the malware family a rule over the recovered text named (the first)
]

# Every table Sigma rules can run on: the lake's kinds and the PowerShell analyzer's table (whose
# rules label what the deobfuscator recovered: malware families).
RULE_TABLES: dict[str, list[tuple[str, str]]] = {**KINDS, "powershell": POWERSHELL_ANALYSIS}

# One row per distinct attacking IP. Written by enrich to source.parquet (the view `source`).
SOURCE: list[tuple[str, str]] = [
    ("ip", "VARCHAR"),
    ("ip_num", "UHUGEINT"),
    ("country_code", "VARCHAR"),  # ISO 3166 alpha-2, NULL when unknown
    ("country_name", "VARCHAR"),
    ("asn", "BIGINT"),
    ("as_org", "VARCHAR"),
    ("network_type", "VARCHAR"),  # 'hosting' | 'access' | 'unknown'
    ("geo_source", "VARCHAR"),  # 'geoip2fast' or the .mmdb file name
    # what the host is: from its host record banners nearest the attack (first_seen); NULL/empty
    # without a host record
    ("os", "VARCHAR"),  # as the record names it: 'Windows Server 2008 R2'
    ("os_family", "VARCHAR"),  # normalised (enrich/data/os_families.csv): 'Windows Server 2008'
    ("products", "VARCHAR[]"),  # products of its services, sorted
    ("service_classes", "VARCHAR[]"),  # enrich/data/service_classes.csv: 'ftp', 'mail', 'vpn', ...
    ("ports", "INTEGER[]"),
    ("hostnames", "VARCHAR[]"),
    ("host_kind", "VARCHAR"),  # 'compromised-server' | 'home-router' | 'cloud-instance' | 'unknown'
    ("host_record_ts", "TIMESTAMP"),  # crawl time of the record used (nearest first_seen)
    # IOC lists that name the address (``feed:value``, e.g. 'feodotracker:1.2.3.4') and the
    # malware families they give it
    ("ioc_matches", "VARCHAR[]"),
    ("malware_families", "VARCHAR[]"),  # from IOC lists and from its detections
    # what its detections say about it (all of the workspace's detections)
    ("classification", "VARCHAR"),  # 'research-scanner' | 'mass-scanner' | 'opportunistic' | 'targeted'
    ("orgs_hit", "INTEGER"),
    ("sensors_hit", "INTEGER"),
    ("exploits", "INTEGER"),  # distinct exploits: campaigns, else CVEs, else rules
    ("detections", "BIGINT"),  # detected events from this address
    ("campaigns", "VARCHAR[]"),
    ("cves", "VARCHAR[]"),
    ("attack_techniques", "VARCHAR[]"),
    ("first_seen", "TIMESTAMP"),
    ("last_seen", "TIMESTAMP"),
]

# One row per indicator worth sharing (enrich's view `indicator`): every attacking
# address (from `source`), and every URL or domain found in an exploit's payload or recovered by
# an analyzer (PowerShell, macros: `payload_indicator`). What export stix|misp|csv reads.
INDICATOR: list[tuple[str, str]] = [
    ("indicator_type", "VARCHAR"),  # 'ipv4' | 'ipv6' | 'url' | 'domain'
    ("value", "VARCHAR"),
    ("role", "VARCHAR"),  # 'attacker' (sent detected attacks) | 'payload' (named in one)
    ("campaigns", "VARCHAR[]"),
    ("cves", "VARCHAR[]"),
    ("malware_families", "VARCHAR[]"),
    ("attack_techniques", "VARCHAR[]"),
    ("ioc_feeds", "VARCHAR[]"),  # IOC lists that also name it
    ("first_seen", "TIMESTAMP"),
    ("last_seen", "TIMESTAMP"),
    ("sightings", "BIGINT"),  # detected events it appears in
    ("orgs", "INTEGER"),  # organisations where it was seen
    ("country_code", "VARCHAR"),  # addresses: where it is
    ("as_org", "VARCHAR"),
    ("classification", "VARCHAR"),  # addresses: as in `source`
]

# `source` is stored as three tables (enrich's folder, see Workspace.enriched): one row per
# address (SOURCE_STORED), and what repeats across addresses once: where its range is
# (SOURCE_PLACE, by `place`) and what its host record says it runs (SOURCE_PROFILE, by
# `profile`; NULL without a record, and the view's lists are then empty).
SOURCE_PLACE = ("country_code", "country_name", "asn", "as_org", "network_type", "geo_source")
SOURCE_PROFILE = ("os", "os_family", "products", "service_classes", "ports")
SOURCE_STORED: list[tuple[str, str]] = [
    (n, t) for n, t in SOURCE if n not in SOURCE_PLACE + SOURCE_PROFILE
] + [("place", "INTEGER"), ("profile", "INTEGER")]
PLACE_STORED: list[tuple[str, str]] = [("place", "INTEGER")] + [
    (n, t) for n, t in SOURCE if n in SOURCE_PLACE]
PROFILE_STORED: list[tuple[str, str]] = [("profile", "INTEGER")] + [
    (n, t) for n, t in SOURCE if n in SOURCE_PROFILE]

# The view `indicator`: every attacking address (of `source`, not a second copy of a million
# rows) and the payload indicators (`payload_indicator`). IPv4-mapped addresses are shared as
# IPv4.
INDICATOR_SELECT = r"""
    SELECT CASE WHEN contains(value, ':') THEN 'ipv6' ELSE 'ipv4' END AS indicator_type, value,
           'attacker' AS role, campaigns, cves, malware_families, attack_techniques,
           list_sort(list_distinct(list_transform(ioc_matches, lambda x: split_part(x, ':', 1))))
               AS ioc_feeds,
           first_seen, last_seen, detections AS sightings, orgs_hit AS orgs, country_code, as_org,
           classification
    FROM (SELECT *, lower(regexp_replace(ip, '^::ffff:([0-9]+\.[0-9]+\.[0-9]+\.[0-9]+)$', '\1',
                                         'i')) AS value
          FROM source WHERE detections > 0 AND ip_num IS NOT NULL)
    UNION ALL BY NAME SELECT * FROM payload_indicator"""


# Catalog tables kept in catalog.duckdb (not in the lake).
CATALOG_DDL = """
CREATE TABLE IF NOT EXISTS org (
    org_id VARCHAR PRIMARY KEY, name VARCHAR, sector VARCHAR, sensors INTEGER
);
CREATE TABLE IF NOT EXISTS ingest_manifest (
    file_id VARCHAR PRIMARY KEY,      -- sha256 of the decompressed content (first 32 hex)
    path VARCHAR, size BIGINT, sha256 VARCHAR, format VARCHAR, org_id VARCHAR,
    lines_read BIGINT, rows_written BIGINT, rows_quarantined BIGINT, comment_lines BIGINT,
    error VARCHAR,                    -- set when the stream ended early (e.g. truncated .gz)
    started_at TIMESTAMP, finished_at TIMESTAMP,
    lines_ignored BIGINT              -- valid records of no interest (e.g. EVE flow events)
);
-- A file that grew since it was ingested is ingested again from the line after the last one
-- ingested: its row counts the new lines only (lines first_line..), `continues` names the
-- earlier row (whose sha256 is that of the first `size` bytes of this one).
ALTER TABLE ingest_manifest ADD COLUMN IF NOT EXISTS first_line BIGINT DEFAULT 1;
ALTER TABLE ingest_manifest ADD COLUMN IF NOT EXISTS continues VARCHAR;
CREATE TABLE IF NOT EXISTS quarantine (
    file_id VARCHAR, source_file VARCHAR, source_line BIGINT, format VARCHAR,
    reason VARCHAR, raw VARCHAR       -- raw line, truncated to 4 KiB, invalid UTF-8 replaced
);
CREATE TABLE IF NOT EXISTS run_history (
    run_id VARCHAR, stage VARCHAR, started_at TIMESTAMP, finished_at TIMESTAMP, summary VARCHAR
);
"""


def ddl_columns(cols: list[tuple[str, str]]) -> str:
    """``name TYPE, ...`` for CREATE TABLE."""
    return ", ".join(f'"{n}" {t}' for n, t in cols)


def empty_select(cols: list[tuple[str, str]]) -> str:
    """A typed zero-row SELECT with these columns (for views over an empty lake)."""
    return "SELECT " + ", ".join(f'CAST(NULL AS {t}) AS "{n}"' for n, t in cols) + " WHERE false"
