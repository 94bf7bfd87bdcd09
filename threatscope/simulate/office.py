"""Real Office documents with VBA macros, written from the specifications (no Office needed).

    from threatscope.simulate.office import write_doc, write_docm, write_docx, write_xls
    write_docm("invoice.docm", {"ThisDocument": 'Sub Document_Open()\\r\\n  MsgBox "hi"\\r\\nEnd Sub'})
    write_doc("old.doc", {"Module1": "Sub AutoOpen()\\r\\nEnd Sub"})
    write_docx("plain.docx", "no macros here")
    write_xls("book.xls", {"ThisWorkbook": "..."}, macro_sheet="Macro1")   # VBA and/or XLM
    vba_project_bin({"Module1": "..."})       # the bytes of a vbaProject.bin
    compound_file({"Dir/Stream": b"..."})     # an OLE2 compound file holding these streams

``modules`` maps a module name to its VBA source. ``ThisDocument``, ``ThisWorkbook`` and
``Sheet<n>`` are document modules (the host's class modules); any other name is a standard
module. An ``Attribute VB_Name`` line is added unless the source starts with one.

The parts, each from its Microsoft specification:

* MS-CFB, compound file: version 3 (512-byte sectors), a FAT, a directory whose siblings are
  red-black trees, streams under 4096 bytes in the mini stream (64-byte sectors, mini FAT).
* MS-OVBA, VBA project: the ``VBA`` storage (``_VBA_PROJECT`` without a performance cache,
  as the specification asks of writers; the ``dir`` stream: project information, no
  references, one record set per module; a stream per module holding only its compressed
  source, so ``MODULEOFFSET`` is 0) and the ``PROJECT`` text stream. The ``CMG``/``DPB``/``GC``
  lines (protection state, password, visibility: encrypted data) are left out; readers that
  extract source (olevba, the ``VBA`` storage parsers) do not use them.
* MS-OVBA compression (2.4.1): the source split into 4096-byte chunks, each LZ77-compressed
  with copy tokens whose offset/length split depends on the position in the chunk; a chunk
  that does not shrink is stored raw (flag bit 0, exactly 4096 bytes).
* MS-XLS (BIFF8), for .xls: a ``Workbook`` stream with the sheet list (BOUNDSHEET records; an
  Excel 4.0 macro sheet is sheet type 1) and the built-in name Auto_Open, no cells.
* ECMA-376 (OPC): ``[Content_Types].xml``, relationships, a one-paragraph
  ``word/document.xml`` and, for .docm, ``word/vbaProject.bin`` with its relationship.

Nothing here runs or interprets VBA: the macros are text stored in the file.
"""

from __future__ import annotations

import os
import struct
import uuid
import zipfile
from pathlib import Path
from xml.sax.saxutils import escape

# -- MS-CFB ----------------------------------------------------------------------------------
_SECTOR = 512
_MINI = 64
_MINI_CUTOFF = 4096
_FREE, _END, _FATSECT = 0xFFFFFFFF, 0xFFFFFFFE, 0xFFFFFFFD
_NOSTREAM = 0xFFFFFFFF
_STORAGE, _STREAM, _ROOT = 1, 2, 5
_RED, _BLACK = 0, 1
_PER_FAT = _SECTOR // 4
_WORD97_CLSID = "00020906-0000-0000-C000-000000000046"


class _Entry:
    def __init__(self, name: str, kind: int, data: bytes = b""):
        if len(name) > 31:
            raise ValueError(f"compound file entry name longer than 31 characters: {name!r}")
        self.name, self.kind, self.data = name, kind, data
        self.children: dict[str, _Entry] = {}
        self.sid = 0
        self.left = self.right = self.child = _NOSTREAM
        self.color = _BLACK
        self.start, self.size = _END, 0
        self.clsid = b"\0" * 16


def _sort_key(name: str) -> tuple[int, str]:
    # MS-CFB 2.6.4: shorter names first, then by upper-cased UTF-16 code points
    return len(name.encode("utf-16-le")), name.upper()


def _tree(entries: list[_Entry], depth: int, height: int) -> int:
    """Link ``entries`` (sorted) as a balanced binary tree; nodes on the deepest level are red,
    the others black (every path then has the same number of black nodes). Its root's sid."""
    if not entries:
        return _NOSTREAM
    mid = len(entries) // 2
    node = entries[mid]
    node.color = _RED if depth == height and height > 0 else _BLACK
    node.left = _tree(entries[:mid], depth + 1, height)
    node.right = _tree(entries[mid + 1:], depth + 1, height)
    return node.sid


def _height(n: int) -> int:
    """Depth of the deepest node of the tree ``_tree`` builds over n entries."""
    return max(0, n.bit_length() - 1)


def _chain(first: int, count: int) -> list[int]:
    """FAT entries of a run of ``count`` consecutive sectors from ``first``."""
    return [first + i + 1 for i in range(count - 1)] + [_END]


def compound_file(streams: dict[str, bytes], root_clsid: str | None = None) -> bytes:
    """An OLE2 compound file (MS-CFB version 3) holding ``streams``, keyed by path
    (``"Macros/VBA/dir"``: storages are made from the path). ``root_clsid``: the root
    storage's class id (e.g. Word 97's), which tools use to tell the application.

        data = compound_file({"WordDocument": b"...", "Macros/PROJECT": b"..."})
    """
    root = _Entry("Root Entry", _ROOT)
    if root_clsid:
        root.clsid = uuid.UUID(root_clsid).bytes_le
    for path, data in streams.items():
        node = root
        *dirs, leaf = path.split("/")
        for d in dirs:
            node = node.children.setdefault(d, _Entry(d, _STORAGE))
            if node.kind != _STORAGE:
                raise ValueError(f"{path}: {d} is a stream, not a storage")
        if leaf in node.children:
            raise ValueError(f"{path}: given twice")
        node.children[leaf] = _Entry(leaf, _STREAM, bytes(data))
    # number the entries (root first, then depth first), link the sibling trees
    order: list[_Entry] = []

    def number(e: _Entry) -> None:
        e.sid = len(order)
        order.append(e)
        kids = sorted(e.children.values(), key=lambda c: _sort_key(c.name))
        for k in kids:
            number(k)
        e.child = _tree(kids, 0, _height(len(kids)))

    number(root)
    # small streams in the mini stream, the others in sectors of their own
    mini = bytearray()
    minifat: list[int] = []
    big: list[_Entry] = []
    for e in order:
        if e.kind != _STREAM:
            continue
        e.size = len(e.data)
        if not e.data:
            e.start = _END
        elif e.size < _MINI_CUTOFF:
            n = -(-e.size // _MINI)
            e.start = len(minifat)
            minifat += _chain(e.start, n)
            mini += e.data.ljust(n * _MINI, b"\0")
        else:
            big.append(e)
    # sector layout: big streams, mini stream, mini FAT, directory, then the FAT itself
    sectors: list[bytes] = []
    fat: list[int] = []

    def place(data: bytes) -> int:
        if not data:
            return _END
        n = -(-len(data) // _SECTOR)
        first = len(sectors)
        for i in range(n):
            sectors.append(data[i * _SECTOR:(i + 1) * _SECTOR].ljust(_SECTOR, b"\0"))
        fat.extend(_chain(first, n))
        return first

    for e in big:
        e.start = place(e.data)
    root.start, root.size = place(bytes(mini)), len(mini)
    minifat_bytes = struct.pack(f"<{len(minifat)}I", *minifat)
    if minifat:
        minifat_bytes += struct.pack("<I", _FREE) * (-len(minifat) % _PER_FAT)
    first_minifat = place(minifat_bytes)
    n_minifat = len(minifat_bytes) // _SECTOR
    directory = b"".join(_dir_entry(e) for e in order)
    directory += _dir_entry(None) * (-len(order) % (_SECTOR // 128))
    first_dir = place(directory)
    # the FAT covers every sector including its own
    n_fat = 1
    while (len(sectors) + n_fat) > n_fat * _PER_FAT:
        n_fat += 1
    if n_fat > 109:
        raise ValueError("compound file too large for a header-only DIFAT (about 7 MB)")
    first_fat = len(sectors)
    fat += [_FATSECT] * n_fat
    fat += [_FREE] * (n_fat * _PER_FAT - len(fat))
    fat_bytes = struct.pack(f"<{len(fat)}I", *fat)
    sectors += [fat_bytes[i * _SECTOR:(i + 1) * _SECTOR] for i in range(n_fat)]
    difat = [first_fat + i for i in range(n_fat)] + [_FREE] * (109 - n_fat)
    header = b"".join([
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", b"\0" * 16,
        struct.pack("<HHHHH", 0x003E, 0x0003, 0xFFFE, 9, 6), b"\0" * 6,
        struct.pack("<IIIIIIIII", 0, n_fat, first_dir, 0, _MINI_CUTOFF,
                    first_minifat if minifat else _END, n_minifat, _END, 0),
        struct.pack("<109I", *difat),
    ])
    assert len(header) == _SECTOR
    return header + b"".join(sectors)


def _dir_entry(e: _Entry | None) -> bytes:
    if e is None:  # an unused entry
        return b"\0" * 64 + struct.pack("<HBBIII", 0, 0, 0, _NOSTREAM, _NOSTREAM, _NOSTREAM) + \
            b"\0" * 16 + b"\0" * 4 + b"\0" * 16 + struct.pack("<IQ", 0, 0)
    name = (e.name + "\0").encode("utf-16-le")
    start, size = (0, 0) if e.kind == _STORAGE else (e.start, e.size)
    return b"".join([
        name.ljust(64, b"\0"),
        struct.pack("<HBBIII", len(name), e.kind, e.color, e.left, e.right, e.child),
        e.clsid, b"\0" * 4, b"\0" * 16, struct.pack("<IQ", start, size),
    ])


# -- MS-OVBA compression ---------------------------------------------------------------------
_CHUNK = 4096


def compress(data: bytes) -> bytes:
    """MS-OVBA 2.4.1 CompressedContainer of ``data`` (see the module docstring)."""
    out = bytearray(b"\x01")
    for start in range(0, len(data), _CHUNK):
        chunk = data[start:start + _CHUNK]
        body = _compress_chunk(chunk)
        if len(body) <= _CHUNK:  # header: size - 3, signature 0b011, flag 1 (compressed)
            out += struct.pack("<H", 0x8000 | 0x3000 | (len(body) + 2 - 3)) + body
        else:
            # does not shrink: a raw chunk (flag 0) of exactly 4096 bytes; only a short last
            # chunk of incompressible bytes gets the padding the specification prescribes
            out += struct.pack("<H", 0x3000 | 0x0FFF) + chunk.ljust(_CHUNK, b"\0")
    return bytes(out)


def _compress_chunk(chunk: bytes) -> bytes:
    """The token sequences of one chunk: literals, and copy tokens for repeats (the longest
    match among the last few positions with the same 3 bytes)."""
    out = bytearray()
    seen: dict[bytes, list[int]] = {}
    pos, n = 0, len(chunk)
    while pos < n:
        flag_at = len(out)
        out.append(0)
        flags = 0
        for bit in range(8):
            if pos >= n:
                break
            bit_count = max((pos - 1).bit_length(), 4) if pos else 4
            max_len = (0xFFFF >> bit_count) + 3
            best_len = best_off = 0
            key = chunk[pos:pos + 3]
            if len(key) == 3:
                for cand in reversed(seen.get(key, [])[-16:]):
                    length = 3
                    limit = min(max_len, n - pos)
                    while length < limit and chunk[cand + length] == chunk[pos + length]:
                        length += 1
                    if length > best_len:
                        best_len, best_off = length, pos - cand
                        if length == limit:
                            break
            if best_len >= 3:
                token = ((best_off - 1) << (16 - bit_count)) | (best_len - 3)
                out += struct.pack("<H", token)
                flags |= 1 << bit
                step = best_len
            else:
                out.append(chunk[pos])
                step = 1
            for p in range(pos, pos + step):
                if p + 3 <= n:
                    seen.setdefault(chunk[p:p + 3], []).append(p)
            pos += step
        out[flag_at] = flags
    return bytes(out)


# -- MS-OVBA VBA project ---------------------------------------------------------------------
_CODEPAGE = 1252
_DOCUMENT_MODULES = ("thisdocument", "thisworkbook")


def _is_document_module(name: str) -> bool:
    low = name.lower()
    return low in _DOCUMENT_MODULES or (low.startswith("sheet") and low[5:].isdigit())


def _mbcs(text: str) -> bytes:
    return text.encode(f"cp{_CODEPAGE}", "replace")


def _rec(rid: int, data: bytes) -> bytes:
    return struct.pack("<HI", rid, len(data)) + data


def _module_source(name: str, source: str) -> bytes:
    head = ""
    if not source.lstrip().startswith("Attribute VB_Name"):
        head = f'Attribute VB_Name = "{name}"\r\n'
        if _is_document_module(name):
            head += ('Attribute VB_Base = "1Normal.ThisDocument"\r\n'
                     "Attribute VB_GlobalNameSpace = False\r\nAttribute VB_Creatable = False\r\n"
                     "Attribute VB_PredeclaredId = True\r\nAttribute VB_Exposed = True\r\n"
                     "Attribute VB_TemplateDerived = True\r\nAttribute VB_Customizable = True\r\n")
    text = head + source
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\r\n")
    return _mbcs(text)


def _dir_stream(names: list[str]) -> bytes:
    """The decompressed ``dir`` stream (MS-OVBA 2.3.4.2) of a project with these modules."""
    u16 = lambda s: s.encode("utf-16-le")  # noqa: E731
    project = b"".join([
        _rec(0x0001, struct.pack("<I", 1)),  # SYSKIND: 32-bit Windows
        _rec(0x0002, struct.pack("<I", 0x409)),  # LCID
        _rec(0x0014, struct.pack("<I", 0x409)),  # LCIDINVOKE
        _rec(0x0003, struct.pack("<H", _CODEPAGE)),  # CODEPAGE
        _rec(0x0004, b"Project"),  # NAME
        _rec(0x0005, b"") + _rec(0x0040, b""),  # DOCSTRING (+ unicode)
        _rec(0x0006, b"") + _rec(0x003D, b""),  # HELPFILEPATH (1, 2)
        _rec(0x0007, struct.pack("<I", 0)),  # HELPCONTEXT
        _rec(0x0008, struct.pack("<I", 0)),  # LIBFLAGS
        struct.pack("<HIIH", 0x0009, 4, 1, 0),  # VERSION: reserved size 4, major, minor
        _rec(0x000C, b"") + _rec(0x003C, b""),  # CONSTANTS (+ unicode)
    ])
    modules = struct.pack("<HIH", 0x000F, 2, len(names)) + struct.pack("<HIH", 0x0013, 2, 0xFFFF)
    for name in names:
        modules += b"".join([
            _rec(0x0019, _mbcs(name)), _rec(0x0047, u16(name)),  # NAME, NAMEUNICODE
            _rec(0x001A, _mbcs(name)), _rec(0x0032, u16(name)),  # STREAMNAME (+ unicode)
            _rec(0x001C, b"") + _rec(0x0048, b""),  # DOCSTRING (+ unicode)
            _rec(0x0031, struct.pack("<I", 0)),  # OFFSET: the source starts the stream
            _rec(0x001E, struct.pack("<I", 0)),  # HELPCONTEXT
            _rec(0x002C, struct.pack("<H", 0xFFFF)),  # COOKIE
            struct.pack("<HI", 0x0022 if _is_document_module(name) else 0x0021, 0),  # TYPE
            struct.pack("<HI", 0x002B, 0),  # terminator
        ])
    return project + modules + struct.pack("<HI", 0x0010, 0)


def _project_stream(names: list[str]) -> bytes:
    lines = ['ID="{00000000-0000-0000-0000-000000000000}"']
    for name in names:
        lines.append(f"Document={name}/&H00000000" if _is_document_module(name)
                     else f"Module={name}")
    lines += ['Name="Project"', 'HelpContextID="0"', 'VersionCompatible32="393222000"', "",
              "[Host Extender Info]",
              "&H00000001={3832D640-CF90-11CF-8E43-00A0C911005A};VBE;&H00000000", "",
              "[Workspace]"]
    lines += [f"{name}=0, 0, 0, 0, C" for name in names]
    return _mbcs("\r\n".join(lines) + "\r\n")


def _vba_streams(modules: dict[str, str], prefix: str = "") -> dict[str, bytes]:
    if not modules:
        raise ValueError("a VBA project needs at least one module")
    names = list(modules)
    for name in names:
        if not name or len(name) > 31 or not name.replace("_", "a").isalnum() \
                or name.lower() in ("dir", "_vba_project"):
            raise ValueError(f"invalid VBA module name {name!r}")
    streams = {
        f"{prefix}PROJECT": _project_stream(names),
        f"{prefix}VBA/_VBA_PROJECT": struct.pack("<HHBH", 0x61CC, 0xFFFF, 0, 0),
        f"{prefix}VBA/dir": compress(_dir_stream(names)),
    }
    for name, source in modules.items():
        streams[f"{prefix}VBA/{name}"] = compress(_module_source(name, source))
    return streams


def vba_project_bin(modules: dict[str, str]) -> bytes:
    """The bytes of a ``vbaProject.bin`` (the VBA project an OOXML file carries)."""
    return compound_file(_vba_streams(modules))


# -- documents -------------------------------------------------------------------------------
def write_doc(path: str | os.PathLike, modules: dict[str, str], text: str = "") -> Path:
    """A Word 97 style document (.doc, OLE2) with the VBA project in its ``Macros`` storage.
    The ``WordDocument`` stream holds only ``text`` (it is no valid Word binary text; macro
    tools read the VBA storage). An empty ``modules`` gives a document without macros."""
    streams = {"WordDocument": _mbcs(text or "document")}
    if modules:
        streams.update(_vba_streams(modules, "Macros/"))
    return _write(path, compound_file(streams, root_clsid=_WORD97_CLSID))


_EXCEL97_CLSID = "00020820-0000-0000-C000-000000000046"


def _biff(rtype: int, data: bytes) -> bytes:
    return struct.pack("<HH", rtype, len(data)) + data


def _bof(kind: int) -> bytes:
    # BIFF8 BOF: version 0x0600, substream kind (0x0005 globals, 0x0010 sheet, 0x0040 macros)
    return _biff(0x0809, struct.pack("<HHHHII", 0x0600, kind, 0x0DBB, 0x07CC, 0, 0x06))


def _workbook_stream(macro_sheet: str | None, auto_open: bool) -> bytes:
    """A BIFF8 ``Workbook`` stream (MS-XLS): a worksheet ``Sheet1`` and, when named, an
    Excel 4.0 macro sheet, with the built-in name Auto_Open on it when ``auto_open``."""
    sheets = [("Sheet1", 0x00, 0x0010)] + ([(macro_sheet, 0x01, 0x0040)] if macro_sheet else [])

    def globals_(offsets: list[int]) -> bytes:
        out = _bof(0x0005)
        for (name, dt, _), pos in zip(sheets, offsets, strict=True):
            raw = _mbcs(name)  # BOUNDSHEET: position, visible, sheet type, short string
            out += _biff(0x0085, struct.pack("<IBBBB", pos, 0, dt, len(raw), 0) + raw)
        if macro_sheet and auto_open:
            # NAME: built-in (fBuiltin), name 0x01 = Auto_Open, no formula
            out += _biff(0x0018, struct.pack("<HBBHHHBBBB", 0x0020, 0, 1, 0, 0, 0, 0, 0, 0, 0)
                         + b"\x00\x01")
        return out + _biff(0x000A, b"")

    size = len(globals_([0] * len(sheets)))
    offsets, body = [], b""
    for _, _, kind in sheets:
        offsets.append(size + len(body))
        body += _bof(kind) + _biff(0x000A, b"")
    return globals_(offsets) + body


def write_xls(path: str | os.PathLike, modules: dict[str, str] | None = None,
              macro_sheet: str | None = None, auto_open: bool = True) -> Path:
    """An Excel 97 workbook (.xls, OLE2): VBA ``modules`` in its ``_VBA_PROJECT_CUR`` storage,
    and/or an Excel 4.0 (XLM) macro sheet named ``macro_sheet`` (with Auto_Open when
    ``auto_open``). The sheets hold no cells."""
    streams = {"Workbook": _workbook_stream(macro_sheet, auto_open)}
    if modules:
        streams.update(_vba_streams(modules, "_VBA_PROJECT_CUR/"))
    return _write(path, compound_file(streams, root_clsid=_EXCEL97_CLSID))


_CT_MAIN = "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"
_CT_MACRO_MAIN = "application/vnd.ms-word.document.macroEnabled.main+xml"
_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_PKG_REL = "http://schemas.openxmlformats.org/package/2006/relationships"


def _ooxml(text: str, vba: bytes | None) -> dict[str, bytes]:
    """The parts of a one-paragraph Word document, with a VBA project when ``vba`` is given."""
    ctypes = ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
              '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
              '<Default Extension="rels" '
              'ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
              '<Default Extension="xml" ContentType="application/xml"/>'
              + ('<Default Extension="bin" ContentType="application/vnd.ms-office.vbaProject"/>'
                 if vba else "")
              + f'<Override PartName="/word/document.xml" '
              f'ContentType="{_CT_MACRO_MAIN if vba else _CT_MAIN}"/></Types>')
    rels = ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
            f'<Relationships xmlns="{_PKG_REL}"><Relationship Id="rId1" '
            f'Type="{_REL}/officeDocument" Target="word/document.xml"/></Relationships>')
    doc = ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
           '<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">'
           f'<w:body><w:p><w:r><w:t>{escape(text)}</w:t></w:r></w:p></w:body></w:document>')
    parts = {"[Content_Types].xml": ctypes, "_rels/.rels": rels, "word/document.xml": doc}
    if vba:
        parts["word/_rels/document.xml.rels"] = (
            '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
            f'<Relationships xmlns="{_PKG_REL}"><Relationship Id="rId1" '
            'Type="http://schemas.microsoft.com/office/2006/relationships/vbaProject" '
            'Target="vbaProject.bin"/></Relationships>')
    out = {k: v.encode() for k, v in parts.items()}
    if vba:
        out["word/vbaProject.bin"] = vba
    return out


def _write_zip(path: str | os.PathLike, parts: dict[str, bytes]) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(p, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in parts.items():  # [Content_Types].xml first, as Office writes it
            z.writestr(zipfile.ZipInfo(name, (2018, 5, 14, 9, 30, 0)), data,
                       compress_type=zipfile.ZIP_DEFLATED)
    return p


def write_docm(path: str | os.PathLike, modules: dict[str, str], text: str = "") -> Path:
    """A macro-enabled Word document (.docm, OOXML) whose ``word/vbaProject.bin`` holds
    ``modules``."""
    return _write_zip(path, _ooxml(text or "document", vba_project_bin(modules)))


def write_docx(path: str | os.PathLike, text: str = "") -> Path:
    """A Word document without macros (.docx, OOXML)."""
    return _write_zip(path, _ooxml(text or "document", None))


def _write(path: str | os.PathLike, data: bytes) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return p
