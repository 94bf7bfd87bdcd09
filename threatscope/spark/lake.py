"""The workspace as Spark sees it: the same views as :meth:`Workspace.refresh_views`.

    register_views(spark, ws)     # temp views http, alert, ..., detection, source, org, ...
    spark.sql("SELECT org_id, count(*) FROM http GROUP BY org_id")

The lake is read where it lies (``lake/<kind>/org_id=<org>/<file_id>_<n>.parquet``): the
organisation from the folder, ``file_id`` from the file name, every column of the kind in the
order and type of :data:`schema.KINDS` (a column no file has yet is NULL), as DuckDB reads it.
The small catalog tables (organisations, manifest, quarantine) are copied from the catalog.
DuckDB's 128-bit IP numbers are DECIMAL(38,0) in Parquet and in Spark.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from threatscope import schema
from threatscope.workspace import Workspace

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

# DuckDB column types as Spark SQL types (lake timestamps carry no zone: TIMESTAMP_NTZ)
SPARK_TYPES = {
    "VARCHAR": "STRING", "TIMESTAMP": "TIMESTAMP_NTZ", "DATE": "DATE", "BIGINT": "BIGINT",
    "INTEGER": "INT", "UHUGEINT": "DECIMAL(38,0)", "VARCHAR[]": "ARRAY<STRING>",
    "INTEGER[]": "ARRAY<INT>", "BOOLEAN": "BOOLEAN", "DOUBLE": "DOUBLE",
}
CATALOG_TABLES = ("org", "ingest_manifest", "quarantine")
ENRICHED = ("source", "payload_indicator", "indicator")  # views over enrich's files
# file_id is the lake file name's prefix (<file_id>_<n>.parquet), as Workspace reads it
FILE_ID = "regexp_extract(_metadata.file_name, '^([^_]*)', 1)"


def spark_type(duckdb_type: str) -> str:
    return SPARK_TYPES[duckdb_type]


def empty(spark: SparkSession, cols: list[tuple[str, str]]) -> DataFrame:
    """A DataFrame with ``cols`` (DuckDB types) and no rows."""
    ddl = ", ".join(f"`{n}` {spark_type(t)}" for n, t in cols)
    return spark.createDataFrame([], ddl)


def kind_frame(spark: SparkSession, ws: Workspace, kind: str) -> DataFrame:
    """The lake's events of ``kind`` (schema.KINDS[kind] columns, in order)."""
    cols = schema.KINDS[kind]
    if not ws.has_data(kind):
        return empty(spark, cols)
    df = (spark.read.option("mergeSchema", "true")
          .option("recursiveFileLookup", "false")
          .parquet(str(ws.lake / kind)))
    have = set(df.columns)
    items = []
    for n, t in cols:
        if n == "file_id":
            items.append(f"{FILE_ID} AS `{n}`")
        elif n not in have:
            items.append(f"CAST(NULL AS {spark_type(t)}) AS `{n}`")
        else:
            items.append(f"CAST(`{n}` AS {spark_type(t)}) AS `{n}`")
    return df.selectExpr(*items)


def register_views(spark: SparkSession, ws: Workspace) -> set[str]:
    """Temp views of the lake's kinds, ``detection``, ``powershell``, ``source``,
    ``payload_indicator`` (once enrich ran) and the catalog's small tables; returns their
    names."""
    names: set[str] = set()

    def view(name: str, df: DataFrame) -> None:
        df.createOrReplaceTempView(name)
        names.add(name)

    spark.conf.set("spark.sql.sources.partitionColumnTypeInference.enabled", "false")
    for kind in schema.KINDS:
        view(kind, kind_frame(spark, ws, kind))
    if ws.detections_path.exists():
        view("detection", spark.read.parquet(str(ws.detections_path)))
    if ws.powershell_path.exists():
        view("powershell", spark.read.parquet(str(ws.powershell_path)))
    with ws.connect(read_only=True) as con:
        for table in (*CATALOG_TABLES, *(ENRICHED if ws.enriched() is not None else ())):
            view(table, _from_duckdb(spark, con, table))
    return names


def _from_duckdb(spark: SparkSession, con, table: str) -> DataFrame:
    """A small DuckDB table or view as a Spark DataFrame (UHUGEINT as its decimal text:
    Arrow and Spark have no 128-bit integer, and an IPv6 number can pass DECIMAL(38,0))."""
    cols = [(n, t) for n, t, *_ in con.execute(f'DESCRIBE "{table}"').fetchall()]
    items = ", ".join(f'CAST("{n}" AS VARCHAR) AS "{n}"' if t == "UHUGEINT" else f'"{n}"'
                      for n, t in cols)
    data = con.sql(f'SELECT {items} FROM "{table}"').to_arrow_table()
    ddl = ", ".join(f"`{n}` {'STRING' if t == 'UHUGEINT' else spark_type(t)}" for n, t in cols)
    if data.num_rows == 0:
        return spark.createDataFrame([], ddl)
    return spark.createDataFrame(data)
