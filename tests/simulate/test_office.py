"""The Office document generator: what it writes must read back, with olefile (strict) and
oletools' olevba, as the documents Office writes do."""

from __future__ import annotations

import random
import zipfile

import olefile
import pytest
from oletools.olevba import VBA_Parser, decompress_stream

from threatscope.simulate.office import (
    compound_file,
    compress,
    vba_project_bin,
    write_doc,
    write_docm,
    write_docx,
    write_xls,
)

MODULES = {
    "ThisDocument": 'Sub Document_Open()\r\n    Module1.Run2\r\nEnd Sub\r\n',
    "Module1": "Sub Run2()\r\n    MsgBox \"<b>hi</b> & 'quotes'\"\r\nEnd Sub\r\n"
               + "".join(f"' line {i} of a long module\r\n" for i in range(600)),
}


def _macros(path) -> dict[str, str]:
    vba = VBA_Parser(str(path))
    try:
        return {name: code for _, _, name, code in vba.extract_macros()}
    finally:
        vba.close()


@pytest.mark.parametrize("size", [0, 1, 8, 9, 4095, 4096, 4097, 12289])
@pytest.mark.parametrize("kind", ["text", "random", "run"])
def test_compression_round_trip(size, kind):
    rnd = random.Random(size)
    data = {"text": lambda: bytes(rnd.choice(b"Dim s As String = Chr(65)\r\n") for _ in range(size)),
            "random": lambda: rnd.randbytes(size),
            "run": lambda: b"A" * size}[kind]()
    packed = compress(data)
    assert packed[0] == 1
    got = bytes(decompress_stream(bytearray(packed)))
    last = size % 4096
    if kind == "random" and last + -(-last // 8) > 4096:
        # a short last chunk that does not fit compressed (literals cost 9 bits) is stored raw,
        # zero-padded to 4096 bytes as MS-OVBA says
        assert got == data.ljust(-(-size // 4096) * 4096, b"\0")
    else:
        assert got == data
    if kind == "run" and size > 100:
        assert len(packed) < size // 10  # copy tokens, not literals


def test_raw_chunks_are_4096_bytes():
    data = random.Random(1).randbytes(8192)
    packed = compress(data)
    assert len(packed) == 1 + 2 * (2 + 4096)
    assert packed[1:3] == b"\xff\x3f"  # size 4095 (+3), signature 0b011, flag 0: raw


def test_compound_file_reads_back_strictly():
    streams = {"big": bytes(range(256)) * 40, "small": b"x" * 100, "empty": b"",
               "A/B/deep": b"deep", **{f"S/n{i:02d}": bytes([i]) * i for i in range(1, 20)}}
    data = compound_file(streams, root_clsid="00020906-0000-0000-C000-000000000046")
    ole = olefile.OleFileIO(data, raise_defects=olefile.DEFECT_POTENTIAL)
    assert ole.parsing_issues == []
    assert sorted("/".join(p) for p in ole.listdir()) == sorted(streams)
    for path, content in streams.items():
        assert ole.openstream(path).read() == content
    assert ole.root.clsid == "00020906-0000-0000-C000-000000000046"


def test_doc_and_docm_carry_the_macros(tmp_path):
    doc = write_doc(tmp_path / "a.doc", MODULES)
    docm = write_docm(tmp_path / "a.docm", MODULES)
    for path in (doc, docm):
        got = _macros(path)
        assert set(got) == {"ThisDocument.cls", "Module1.bas"}
        assert got["Module1.bas"].startswith('Attribute VB_Name = "Module1"\r\n')
        assert got["Module1.bas"].endswith(MODULES["Module1"])
        assert 'Attribute VB_Name = "ThisDocument"' in got["ThisDocument.cls"]
        assert got["ThisDocument.cls"].endswith(MODULES["ThisDocument"])
    assert olefile.OleFileIO(str(doc)).exists("Macros/VBA/dir")
    with zipfile.ZipFile(docm) as z:
        assert z.namelist()[0] == "[Content_Types].xml"
        assert "vbaProject" in z.read("[Content_Types].xml").decode()
        bin_ = z.read("word/vbaProject.bin")
    assert bin_ == vba_project_bin(MODULES)
    vba = VBA_Parser(str(doc))
    assert vba.ftg.ftype.name == "MS Word 97 Document"
    assert [k for t, k, _ in vba.analyze_macros() if t == "AutoExec"] == ["Document_Open"]
    vba.close()


def test_docx_and_doc_without_macros(tmp_path):
    for path in (write_docx(tmp_path / "a.docx", "<b>plain</b>"), write_doc(tmp_path / "b.doc", {})):
        vba = VBA_Parser(str(path))
        assert not vba.detect_vba_macros()
        vba.close()
    with zipfile.ZipFile(tmp_path / "a.docx") as z:
        assert "&lt;b&gt;plain&lt;/b&gt;" in z.read("word/document.xml").decode()


def test_xls_with_vba_and_an_xlm_macro_sheet(tmp_path):
    path = write_xls(tmp_path / "a.xls", {"ThisWorkbook": "Sub Workbook_Open()\r\nEnd Sub\r\n"},
                     macro_sheet="Macro1")
    vba = VBA_Parser(str(path))
    assert vba.detect_vba_macros() and vba.detect_xlm_macros()
    kinds = {(t, k) for t, k, _ in vba.analyze_macros()}
    assert {("AutoExec", "Workbook_Open"), ("AutoExec", "Auto_Open"),
            ("Suspicious", "XLM macro")} <= kinds
    vba.close()
    plain = VBA_Parser(str(write_xls(tmp_path / "b.xls")))
    assert not plain.detect_vba_macros() and not plain.detect_xlm_macros()
    plain.close()


@pytest.mark.parametrize("bad", ["", "dir", "has space", "x" * 32, "a/b"])
def test_invalid_module_names_are_refused(tmp_path, bad):
    with pytest.raises(ValueError):
        write_doc(tmp_path / "x.doc", {bad: "Sub A()\r\nEnd Sub"})
