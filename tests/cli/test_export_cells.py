"""CSV exports: lists as one cell, formula-looking text defused, in SQL as the report does it."""

import csv
import io

import duckdb

from threatscope.cli import _csv_select
from threatscope.report.tables import cell


def test_csv_cells_in_sql_equal_the_report_cells():
    con = duckdb.connect()
    values = ["=1+1", "+x", "-2", "@SUM(A1)", "\tx", "\rx", "ok", "a=b", "", None, "'q", "—"]
    con.execute("CREATE TABLE t AS SELECT unnest(?::VARCHAR[]) AS v, "
                "[unnest(?::VARCHAR[]), 'b'] AS l, 7 AS n", [values, values])
    got = con.execute(_csv_select(con, "SELECT * FROM t")).fetchall()
    assert [g[0] for g in got] == [None if v is None else cell(v) for v in values]
    assert [g[1] for g in got] == [cell([v, "b"]) for v in values]
    assert {g[2] for g in got} == {7}
    # and it survives a CSV round trip as one cell each
    buf = io.StringIO()
    csv.writer(buf).writerows(got)
    assert [r[0] for r in csv.reader(io.StringIO(buf.getvalue()))][:4] == \
        ["'=1+1", "'+x", "'-2", "'@SUM(A1)"]
