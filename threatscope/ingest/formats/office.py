"""Office documents (OLE2 and OOXML) analysed with oletools' olevba, into ``document``.

One file is one record: a ``document`` row, or one quarantine entry when oletools cannot read
it (not a well-formed compound file or zip, a truncated or damaged one, an encrypted one, a VBA
project whose modules cannot be read, a file over ``MAX_BYTES``)::

    threatscope ingest -w ws --org acme mail-attachments/     # .doc .xls .docm .xlsm ...

Recognised by content, not name: OLE2 files (``D0 CF 11 E0 A1 B1 1A E1``: .doc/.xls/.ppt,
.msg, a bare ``vbaProject.bin``) and zip files that are OPC packages (a
``[Content_Types].xml`` member: .docx/.docm/.xlsx/.xlsm/.pptm...); any other zip is left to
the other formats. The analysis runs in-process (``VBA_Parser``, ``analyze_macros``): macros
are decompressed and scanned as text, never run, and nothing is fetched.

``ts`` is the file's modification time (UTC): when the file was saved where it was collected
(mail gateway, endpoint). The times inside a document (author's "created", "last saved") are
set by whoever made it and are not used. Excel 4 (XLM) macros are reported
(``has_xlm_macros``, and "XLM macro" among the suspicious keywords) where olevba finds them
cheaply: macro sheets of OLE workbooks (.xls, BIFF8); not in .xlsm/.xlsb. VBA stomping
(P-code that differs from the source) is not checked: olevba's P-code disassembly changes
process-wide state (``sys.stderr``, logging) and is left off.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime

import pyarrow as pa

from threatscope.ingest import reader
from threatscope.ingest.formats import Format, ParseResult, Part, register

OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
ZIP_MAGIC = b"PK\x03\x04"
_OPC_PART = b"[Content_Types].xml"
_SNIFF_TAIL = 64 << 10  # the zip central directory, which names every member, is at the end
MAX_BYTES = 128 << 20  # a bigger file (or unpacked zip) is quarantined, not analysed
VBA_CODE_KEEP = 64 << 10  # characters of macro source kept in ``vba_code``

# document column -> (Arrow type): the row ``read_batches`` builds (schema.DOCUMENT)
_COLUMNS = {
    "ts": pa.timestamp("us"), "file_name": pa.string(), "file_extension": pa.string(),
    "file_size": pa.int64(), "file_hash_sha256": pa.string(),
    "document_container": pa.string(), "document_type": pa.string(),
    "has_macros": pa.bool_(), "has_xlm_macros": pa.bool_(), "vba_modules": pa.string(),
    "vba_autoexec": pa.string(), "vba_suspicious": pa.string(), "vba_iocs": pa.string(),
    "vba_code": pa.string(),
}


# what olevba lists among the modules but are not VBA modules: the Excel 4 formulas and, when
# it finds VBA stomping, the disassembled P-code (both kept in vba_code, which rules search)
_PSEUDO_MODULES = ("xlm_macro.txt", "VBA_P-code.txt")


class Unreadable(Exception):
    """A document oletools cannot analyse; the message is the quarantine reason."""


def is_opc_zip(path: str) -> bool:
    """Whether a zip file is an OPC package (OOXML): ``[Content_Types].xml`` is named in its
    first local headers or in its central directory (so a truncated one is still known)."""
    with open(path, "rb") as f:
        head = f.read(_SNIFF_TAIL)
        if _OPC_PART in head:
            return True
        size = os.fstat(f.fileno()).st_size
        if size <= _SNIFF_TAIL:
            return False
        f.seek(max(_SNIFF_TAIL, size - _SNIFF_TAIL))
        return _OPC_PART in f.read()


def analyse(path: str) -> dict:
    """The ``document`` columns of one file (and ``raw``, the analysis summary as JSON), or
    ``Unreadable``.

        row = analyse("invoice.docm")
        row["vba_autoexec"]          # 'AutoOpen\\nDocument_Open' (one keyword a line) or None
    """
    size = os.path.getsize(path)
    if size > MAX_BYTES:
        raise Unreadable(f"Office document too large to analyse ({size} bytes > {MAX_BYTES})")
    with open(path, "rb") as f:
        head = f.read(8)
    if head.startswith(OLE_MAGIC):
        container = "ole"
        _check_ole(path)
    elif head.startswith(ZIP_MAGIC):
        container = "ooxml"
        _check_zip(path)
    else:
        raise Unreadable("not an Office document (neither an OLE2 file nor a zip package)")
    from oletools import olevba  # (imported on first use: ingest of logs does not need it)

    try:
        # no P-code pass: olevba's (pcodedmp) swaps the process's sys.stderr while it runs
        # (and leaves it swapped when it fails) and turns oletools' logging on for good
        vba = olevba.VBA_Parser(path, disable_pcode=True)
    except olevba.OlevbaBaseException as e:
        raise Unreadable(f"oletools cannot read this document: {_short(e)}") from None
    try:
        if vba.detect_is_encrypted():
            raise Unreadable("encrypted (password-protected) Office document: its content "
                             "cannot be analysed")
        return _analysis(vba, path, size, container)
    finally:
        vba.close()


def _analysis(vba, path: str, size: int, container: str) -> dict:
    has_vba = bool(vba.detect_vba_macros())
    has_xlm = bool(vba.detect_xlm_macros())
    modules = vba.extract_all_macros() if (has_vba or has_xlm) else []
    vba_modules = [m for m in modules if m[2] not in _PSEUDO_MODULES]
    if has_vba and not any(isinstance(c, str) and c.strip() for _, _, _, c in vba_modules):
        raise Unreadable("VBA project found but none of its modules could be read by oletools")
    found: dict[str, list[tuple[str, str]]] = {}
    for kind, keyword, description in (vba.analyze_macros() or []) if modules else []:
        found.setdefault(kind, []).append((keyword, description))
    code = "\n".join(c for _, _, _, c in modules if isinstance(c, str))
    autoexec = _unique(k for k, _ in found.get("AutoExec", []))
    suspicious = _unique(k for k, _ in found.get("Suspicious", []))
    iocs = _unique(k for k, _ in found.get("IOC", []))
    name = os.path.basename(path)
    summary = {  # what an analyst reads first comes first (detection evidence shows it)
        "file_name": name, "autoexec": autoexec, "suspicious": suspicious, "iocs": iocs,
        "container": container, "type": vba.ftg.ftype.name if vba.ftg else None,
        "modules": [{"name": n, "stream": s, "chars": len(c)} for _, s, n, c in vba_modules],
        "vba_macros": has_vba, "xlm_macros": has_xlm,
        "descriptions": {k: d for kind in ("AutoExec", "Suspicious") for k, d in found.get(kind, [])},
        "hex_strings": len(found.get("Hex String", [])),
        "base64_strings": len(found.get("Base64 String", [])),
        "dridex_strings": len(found.get("Dridex string", [])),
        "vba_code_truncated": len(code) > VBA_CODE_KEEP,
    }
    return {
        "ts": datetime.fromtimestamp(os.path.getmtime(path), UTC).replace(tzinfo=None),
        "file_name": name,
        "file_extension": os.path.splitext(name)[1][1:].lower() or None,
        "file_size": size,
        "file_hash_sha256": _sha256(path),
        "document_container": container,
        "document_type": summary["type"],
        "has_macros": has_vba or has_xlm,
        "has_xlm_macros": has_xlm,
        "vba_modules": _lines(m["name"] for m in summary["modules"]),
        "vba_autoexec": _lines(autoexec),
        "vba_suspicious": _lines(suspicious),
        "vba_iocs": _lines(iocs),
        "vba_code": code[:VBA_CODE_KEEP] or None,
        "raw": json.dumps(summary, ensure_ascii=False),
    }


def _check_ole(path: str) -> None:
    """Read the whole compound file as olefile sees it (every stream's sector chain), strict
    about structure, so that a damaged or cut file is quarantined rather than half-read."""
    import olefile

    try:
        with olefile.OleFileIO(path, raise_defects=olefile.DEFECT_INCORRECT) as ole:
            for entry in ole.listdir(streams=True, storages=False):
                with ole.openstream(entry) as s:
                    while s.read(1 << 20):
                        pass
    except Exception as e:  # olefile raises OSError, ValueError, struct/index errors...
        raise Unreadable(f"damaged or truncated OLE2 file: {_short(e)}") from None


def _check_zip(path: str) -> None:
    """Open the zip package and check every member (CRC): a cut, damaged or encrypted package
    is quarantined; declared sizes bound what is unpacked (a zip bomb is refused)."""
    try:
        with zipfile.ZipFile(path) as z:
            members = z.infolist()
            if any(m.flag_bits & 1 for m in members):
                raise Unreadable("encrypted zip package: its content cannot be analysed")
            if sum(m.file_size for m in members) > MAX_BYTES:
                raise Unreadable(f"zip package unpacks to more than {MAX_BYTES} bytes")
            if (bad := z.testzip()) is not None:
                raise Unreadable(f"damaged zip package: member {bad!r} fails its CRC check")
    except Unreadable:
        raise
    except Exception as e:  # BadZipFile, zlib.error, EOFError, NotImplementedError...
        raise Unreadable(f"damaged or truncated zip package: {_short(e)}") from None


def _sha256(path: str) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _unique(items) -> list[str]:
    return list(dict.fromkeys(str(x) for x in items))


def _lines(items) -> str | None:
    """Values one a line (``contains`` rules match them); NULL when there are none."""
    return "\n".join(items) or None


def _short(e: BaseException) -> str:
    name = type(e).__name__
    if name == "error":  # zlib.error, struct.error
        name = f"{type(e).__module__}.error"
    return f"{name}: {e}"[:300]


@register
class OfficeDocument(Format):
    """Office documents: OLE2 (.doc/.xls/.ppt, vbaProject.bin) and OOXML (.docx/.docm/.xlsm...)
    -> one ``document`` row per file (see the module docstring). Columns: file_name,
    file_extension, file_size, file_hash_sha256, document_container ('ole' | 'ooxml'),
    document_type (oletools' name, e.g. 'MS Word 2007+ Macro-Enabled Document'), has_macros,
    has_xlm_macros, and one value a line: vba_modules (module file names), vba_autoexec
    (entry points that run by themselves: AutoOpen, Document_Open, Workbook_Open...),
    vba_suspicious (olevba's suspicious keywords: Shell, CreateObject, WScript.Shell,
    URLDownloadToFileA, Chr...), vba_iocs (URLs, IPs, executable names); vba_code (the macro
    source, at most ``VBA_CODE_KEEP`` characters); raw (the analysis summary as JSON)."""

    name = "office"
    magic = (OLE_MAGIC, ZIP_MAGIC)

    @classmethod
    def sniff_binary(cls, path: str, head: bytes) -> bool:
        if head.startswith(OLE_MAGIC):
            return True
        return head.startswith(ZIP_MAGIC) and is_opc_zip(path)

    def read_batches(self, path: str) -> Iterator[reader.Batch]:
        try:
            row = analyse(path)
        except Unreadable as e:
            yield reader.Batch(table=pa.table({"n": pa.array([], pa.int64()),
                                               "line": pa.array([], pa.string())}),
                               lines=1, bad=[(1, str(e), "")])
            return
        cols = {"n": pa.array([1], pa.int64()), "line": pa.array([row["raw"]], pa.string())}
        cols.update((c, pa.array([row[c]], t)) for c, t in _COLUMNS.items())
        yield reader.Batch(table=pa.table(cols), lines=1, nbytes=len(row["raw"]))

    def parse(self, con, batch, prepared) -> ParseResult:
        t = batch.table.rename_columns(
            ["source_line" if c == "n" else "raw" if c == "line" else c
             for c in batch.table.column_names])
        return ParseResult(parts=[Part("document", table=t)])
