import gzip
import os

import pytest

from tests.ingest.conftest import assert_invariant, manifest, quarantine, rows, run, write
from threatscope.errors import UserError
from threatscope.ingest import reader

LINE = '192.0.2.{i} - - [01/May/2018:10:00:{s:02d} +0000] "GET /p{n} HTTP/1.1" 200 1 "-" "ua"\n'


def lines(n: int, start: int = 0) -> str:
    return "".join(LINE.format(i=i % 250, s=i % 60, n=i) for i in range(start, start + n))


def test_binary_garbage_named_file_is_quarantined(ws, tmp_path):
    junk = bytes(range(256)) * 40 + b"\n" + b"\x00\x01\x02garbage\n"
    s = run(ws, write(tmp_path / "junk.bin", junk))
    assert_invariant(s)
    assert s.rows_written == 0 and s.rows_quarantined == s.lines_read > 0
    assert s.per_file[0]["format"] == "unknown"


def test_invalid_utf8_and_long_lines_inside_a_good_file(ws, tmp_path):
    # Line 4 is Latin-1 (as an old server might write it): invalid UTF-8.
    data = lines(3).encode() + b'1.2.3.4 - - [01/May/2018:10:00:00 +0000] "GET /\xe9 HTTP/1.1" 200 1\n'
    data += b"A" * (reader.MAX_LINE + 10) + b"\n" + lines(2, 3).encode()
    s = run(ws, write(tmp_path / "mixed.log", data))
    assert_invariant(s)
    assert (s.lines_read, s.rows_written, s.rows_quarantined) == (7, 5, 2)
    assert quarantine(ws) == [(4, "invalid UTF-8"), (5, "line too long")]
    with ws.connect() as con:
        (raw,) = con.execute("SELECT raw FROM quarantine WHERE source_line = 5").fetchall()[0]
    assert len(raw) == reader.RAW_KEEP


def test_huge_line_spanning_blocks(ws, tmp_path, monkeypatch):
    monkeypatch.setattr(reader, "BLOCK", 64 << 10)
    data = lines(2).encode() + b"B" * (reader.MAX_LINE * 2) + b"\n" + lines(2, 2).encode()
    s = run(ws, write(tmp_path / "huge.log", data))
    assert_invariant(s)
    assert (s.lines_read, s.rows_written, s.rows_quarantined) == (5, 4, 1)
    assert quarantine(ws) == [(3, "line too long")]
    assert [r["source_line"] for r in rows(ws, cols="source_line")] == [1, 2, 4, 5]


def test_empty_file_gets_a_manifest_row(ws, tmp_path):
    s = run(ws, write(tmp_path / "empty.log", b""))
    assert s.files == 1 and s.lines_read == 0
    (m,) = manifest(ws)
    assert (m["lines_read"], m["rows_written"]) == (0, 0)


def test_blank_lines_count_as_comment_lines(ws, tmp_path):
    s = run(ws, write(tmp_path / "blank.log", "\n" + lines(2) + "\r\n\n"))
    assert_invariant(s)
    assert (s.lines_read, s.rows_written, s.comment_lines) == (5, 2, 3)


def test_crlf_lines(ws, tmp_path):
    s = run(ws, write(tmp_path / "crlf.log", lines(2).replace("\n", "\r\n")))
    assert s.rows_written == 2
    assert all(not r["raw"].endswith("\r") for r in rows(ws, cols="raw"))


def test_truncated_gzip_keeps_lines_before_damage(ws, tmp_path):
    full = gzip.compress(lines(5000).encode())
    s = run(ws, write(tmp_path / "cut.log.gz", full[: len(full) // 2]))
    assert_invariant(s)
    assert 0 < s.rows_written < 5000 and s.rows_quarantined <= 1  # the cut last line
    assert len(s.errors) == 1 and "cut.log.gz" in s.errors[0] and "gzip" in s.errors[0]
    (m,) = manifest(ws)
    assert m["error"] and m["rows_written"] == s.rows_written


def test_directory_of_mixed_formats_with_org_layout(ws, tmp_path):
    root = tmp_path / "in"
    write(root / "acme" / "web" / "access.log", lines(3))
    write(root / "acme" / "u_ex1.log", "#Fields: date time c-ip cs-method cs-uri-stem sc-status\n"
          "2018-05-01 10:00:00 192.0.2.1 GET / 200\n")
    write(root / "beta" / "eve.json", '{"timestamp": "2018-05-01T10:00:00+0000", '
          '"event_type": "http", "src_ip": "192.0.2.9", "http": {"url": "/"}}\n')
    write(root / "beta" / "reqs.jsonl", '{"method": "GET", "uri": "/", "org_id": "gamma"}\n')
    write(root / "top.log", lines(1))
    write(root / "orgs.csv", "org_id,name,sector\nacme,Acme,retail\n")
    write(root / "notes.bin", b"\x89PNG\r\n\x1a\n\x00\x00")
    write(root / ".hidden.log", lines(1))
    s = run(ws, root)
    assert_invariant(s)
    assert s.files == 5 and s.rows_written == 7
    assert sorted(s.unrecognised) == sorted([str(root / "orgs.csv"), str(root / "notes.bin")])
    fmts = {os.path.basename(f["path"]): f["format"] for f in s.per_file if f["format"]}
    assert fmts["access.log"] == "combined" and fmts["u_ex1.log"] == "w3c"
    assert fmts["eve.json"] == "eve" and fmts["reqs.jsonl"] == "http-jsonl"
    orgs = {(os.path.basename(r["source_file"]), r["org_id"])
            for r in rows(ws, cols="source_file, org_id")}
    assert orgs == {("access.log", "acme"), ("u_ex1.log", "acme"), ("eve.json", "beta"),
                    ("reqs.jsonl", "gamma"), ("top.log", "default")}
    with ws.connect() as con:
        assert {r[0] for r in con.execute("SELECT org_id FROM org").fetchall()} == {
            "acme", "beta", "gamma", "default"}


def test_unreadable_and_missing_paths_do_not_stop_the_others(ws, tmp_path):
    good = write(tmp_path / "good.log", lines(2))
    broken = tmp_path / "broken.log"
    os.symlink(tmp_path / "nowhere", broken)
    s = run(ws, good, broken, tmp_path / "missing.log")
    assert s.rows_written == 2
    assert any("broken.log" in e and "cannot read" in e for e in s.errors)
    assert any("missing.log" in e for e in s.errors)
    assert all("\n" not in e for e in s.errors)


def test_directory_named_like_a_file_is_walked(ws, tmp_path):
    write(tmp_path / "x.log" / "a.log", lines(1))
    assert run(ws, tmp_path / "x.log").rows_written == 1


def test_user_errors(ws, tmp_path):
    with pytest.raises(UserError, match="no input files"):
        run(ws, tmp_path / "missing.log")
    with pytest.raises(UserError, match="unknown format"):
        run(ws, write(tmp_path / "a.log", lines(1)), fmt="nope")
    with pytest.raises(UserError, match="organisation"):
        run(ws, tmp_path / "a.log", org="a/b")


def test_stdin(ws, tmp_path, monkeypatch):
    import io
    import sys

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(lines(3).encode())))
    s = run(ws, "-")
    assert s.rows_written == 3
    assert {r["source_file"] for r in rows(ws, cols="source_file")} == {"<stdin>"}


def test_progress_advances_to_the_total(ws, tmp_path):
    a = write(tmp_path / "a.log", lines(100))
    b = write(tmp_path / "b.log.gz", gzip.compress(lines(100, 100).encode()))
    calls = []
    run(ws, a, b, progress=lambda adv, total, desc: calls.append((adv, total, desc)))
    total = a.stat().st_size + b.stat().st_size
    assert sum(c[0] for c in calls) == total and {c[1] for c in calls} == {total}
