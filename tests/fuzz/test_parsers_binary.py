"""Fuzzing of the record-format parsers that read binary files (evtx, office): valid files the
tests build (``evtx_build``, ``threatscope.simulate.office``) with bytes flipped, ranges
overwritten, cut short, extended, or compressed, plus compressed random bytes; ingested with
the format forced and auto-detected (properties in ``harness``)."""

from __future__ import annotations

import dataclasses
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from hypothesis import example, given
from hypothesis import strategies as st

from tests.fuzz.evtx_build import CHUNK, FILE_HEADER, Event, evtx_file
from tests.fuzz.harness import (
    Input,
    blocks,
    compress,
    examples,
    files,
    labs_fixture,
    nasty,
    wrapped,
)
from threatscope.simulate import office

labs = labs_fixture()


@st.composite
def damaged(draw, data: bytes, hot: int) -> Input:
    """``data`` as a file, maybe damaged: bytes flipped (mostly in the first ``hot`` bytes,
    where the headers are), a range overwritten, cut short, garbage appended, or compressed."""
    how = draw(st.sampled_from(["intact", "flip", "flip", "overwrite", "cut", "append",
                                "wrap"]))
    if how == "wrap":
        return draw(wrapped(data))
    buf = bytearray(data)
    if how == "flip":
        for _ in range(draw(st.integers(1, 8))):
            at = draw(st.integers(0, min(hot, len(buf)) - 1) if draw(st.booleans())
                      else st.integers(0, len(buf) - 1))
            buf[at] ^= draw(st.integers(1, 255))
    elif how == "overwrite":
        at = draw(st.integers(0, len(buf)))
        junk = draw(st.binary(min_size=1, max_size=64))
        buf[at:at + len(junk)] = junk
    elif how == "cut":
        del buf[draw(st.integers(0, len(buf))):]
    elif how == "append":
        buf += draw(st.binary(max_size=200))
    return Input.text(bytes(buf), how)


# -- EVTX -------------------------------------------------------------------------------------
events = st.builds(
    Event,
    event_id=st.one_of(st.sampled_from([1, 3, 4104, 4688]), st.integers(0, 65535)),
    data=st.one_of(st.text(max_size=30), nasty()).map(lambda s: s[:2000]),
    channel=st.sampled_from(["Microsoft-Windows-Sysmon/Operational", "Security",
                             "Microsoft-Windows-PowerShell/Operational", ""]),
    provider=st.sampled_from(["Microsoft-Windows-Sysmon", "Microsoft-Windows-PowerShell",
                              "Microsoft-Windows-Security-Auditing"]),
    computer=st.text(max_size=10),
    time=st.datetimes(min_value=datetime(1601, 1, 2), max_value=datetime(9999, 1, 1),
                      timezones=st.just(UTC)),
)


@st.composite
def evtx_inputs(draw) -> Input:
    evs = draw(st.lists(events, min_size=1, max_size=12))
    data = evtx_file(evs, per_chunk=draw(st.integers(1, 8)))
    inp = draw(damaged(data, FILE_HEADER + 1024))
    if inp.note == "intact":  # one record per event
        return dataclasses.replace(inp, records=len(evs))
    return inp


@examples()
@given(block=blocks, inputs=files(evtx_inputs(), 2))
# found by fuzzing: the evtx parser's error on a header it cannot read made the file "failed"
@example(block=None, inputs=[Input.text(b"", "empty")])
def test_evtx(labs, inputs, block):
    labs("evtx").check(inputs, "evtx", ".evtx", block)


def test_evtx_builder_writes_what_windows_would():
    """The fuzz seeds are real EVTX: the evtx package reads every record back."""
    import evtx

    data = evtx_file([Event(1, "cmd /c whoami"), Event(4104, "Get-Process")] * 3, per_chunk=4)
    assert len(data) == FILE_HEADER + 2 * CHUNK
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "x.evtx").write_bytes(data)
        parser = evtx.PyEvtxParser(str(Path(d) / "x.evtx"), validate_checksums=True)
        got = [r["data"] for r in parser.records_json()]
    assert len(got) == 6 and '"EventID":4104' in got[1] and "cmd /c whoami" in got[0]


# -- Office -----------------------------------------------------------------------------------
VBA = st.one_of(
    st.just('Sub AutoOpen()\r\n    Shell "cmd /c calc"\r\nEnd Sub\r\n'),
    st.text(max_size=200),
    nasty().map(lambda s: f'Sub Document_Open()\r\n  x = "{s[:500]}"\r\nEnd Sub\r\n'),
)
modules = st.dictionaries(st.sampled_from(["ThisDocument", "Module1", "Module2", "Sheet1"]),
                          VBA, max_size=2)


@st.composite
def office_seed(draw) -> bytes:
    kind = draw(st.sampled_from(["doc", "docm", "docx", "xls", "vbaproject"]))
    mods = draw(modules)
    text = draw(st.text(max_size=40))
    if kind == "vbaproject":
        return office.vba_project_bin(mods or {"Module1": "Sub A()\r\nEnd Sub\r\n"})
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"x.{kind}"
        if kind == "doc":
            office.write_doc(path, mods, text)
        elif kind == "docm":
            office.write_docm(path, mods or {"Module1": "Sub A()\r\nEnd Sub\r\n"}, text)
        elif kind == "docx":
            office.write_docx(path, text)
        else:
            office.write_xls(path, mods or None, macro_sheet=draw(st.sampled_from([None, "M1"])))
        return path.read_bytes()


@st.composite
def office_inputs(draw) -> Input:
    return draw(damaged(draw(office_seed()), 2048))


@examples()
@given(block=blocks, inputs=files(office_inputs(), 2))
def test_office(labs, inputs, block):
    labs("office").check(inputs, "office", ".doc", block)


# -- any format, compressed random bytes ------------------------------------------------------
@examples()
@given(fmt=st.sampled_from(["evtx", "office", "ioc-feodo-json", "w3c", "eve", "shodan"]),
       data=st.binary(max_size=300), kind=st.sampled_from(["gzip", "bzip2", "zstd"]))
def test_compressed_random_bytes(labs, fmt, data, kind):
    labs(f"z-{fmt}").check([Input(compress(kind, data), data, kind)], fmt)
