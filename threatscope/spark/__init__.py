"""Apache Spark: the engine for telemetry that outgrows one machine.

    from threatscope import spark
    s = spark.session()                        # local[*], or $SPARK_REMOTE (Spark Connect)
    s = spark.session("spark://head:7077")     # a standalone cluster's master
    s = spark.session("local[2]")

Every stage takes ``engine="duckdb"`` (the default: one machine) or ``engine="spark"``; both
read and write the same workspace (the Parquet lake, ``detection.parquet``, the enriched
tables), so a report does not care which engine made its figures.

Spark is optional: ``pip install 'threatscope[spark]'`` (pyspark, and pandas, which
``mapInArrow`` needs). Problems a user can fix (no pyspark, no Java 17, a master that does not
answer) are :class:`UserError` s that say what to do, raised before any file is written.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from threatscope.errors import UserError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

ENGINES = ("duckdb", "spark")
JAVA_MIN = 17
CONNECT_TIMEOUT = 5.0  # seconds to wait for a master or Spark Connect server to answer

# Settings every session gets: UTC (timestamps in the lake carry no zone, as in DuckDB), no web
# UI, few shuffle partitions (the default 200 is for clusters: local runs pay for each one).
DEFAULTS = {
    "spark.sql.session.timeZone": "UTC",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.shuffle.partitions": str(max(2, 2 * (os.cpu_count() or 1))),
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.parquet.datetimeRebaseModeInRead": "CORRECTED",
    "spark.sql.parquet.int96RebaseModeInRead": "CORRECTED",
}


def check_engine(engine: str) -> str:
    """``engine`` if it is one threatscope runs on, else a UserError naming them."""
    if engine not in ENGINES:
        raise UserError(f"unknown engine {engine!r} (known: {', '.join(ENGINES)})")
    return engine


def session(master: str | None = None, remote: str | None = None,
            conf: dict[str, str] | None = None) -> SparkSession:
    """A Spark session (the running one if its master is the same): Spark Connect at
    ``remote`` (default ``$SPARK_REMOTE``), else a classic session on ``master`` (default
    ``$SPARK_MASTER``, else ``local[*]``). ``conf``: extra Spark settings."""
    remote = remote if remote is not None else os.environ.get("SPARK_REMOTE") or None
    master = master or os.environ.get("SPARK_MASTER") or "local[*]"
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise UserError("the Spark engine needs pyspark: pip install 'threatscope[spark]'") from None
    settings = {**DEFAULTS, **(conf or {})}
    if remote:
        _reachable(remote, "sc", 15002, "Spark Connect server (SPARK_REMOTE)")
        builder = SparkSession.builder.remote(remote)
    else:
        _java()
        if not master.startswith("local"):
            _reachable(master, "spark", 7077, "Spark master (--spark-master)")
        # the workers run our analyzers: the same interpreter and packages as the driver
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        builder = SparkSession.builder.master(master).appName("threatscope")
    for key, value in settings.items():
        builder = builder.config(key, value)
    try:
        spark = builder.getOrCreate()
    except Exception as e:  # py4j and Spark raise many kinds; the message is what helps
        raise UserError(f"could not start Spark ({remote or master}): {_first_line(e)}") from None
    if not remote:  # (a Connect server's logging is its own)
        # Spark's warnings (a window without partitions, a checkpoint's lineage) are about its
        # plans, not the user's data: hundreds of lines per report otherwise
        spark.sparkContext.setLogLevel(os.environ.get("THREATSCOPE_SPARK_LOG", "ERROR"))
    return spark


def _java() -> None:
    """Java JAVA_MIN or later, found as Spark finds it (JAVA_HOME, else PATH), or a UserError."""
    home = os.environ.get("JAVA_HOME")
    java = os.path.join(home, "bin", "java") if home else shutil.which("java")
    if not java or not os.path.exists(java):
        where = f"JAVA_HOME={home} has no bin/java" if home else "no `java` on PATH"
        raise UserError(f"Spark needs Java {JAVA_MIN} or later ({where}): install a JDK "
                        f"(Debian: apt install openjdk-{JAVA_MIN}-jre-headless) or set JAVA_HOME")
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise UserError(f"Spark needs Java {JAVA_MIN} or later; {java} did not run: {e}") from None
    m = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    major = int(m.group(1)) if m else 0
    major = int(m.group(2) or 0) if major == 1 and m else major  # "1.8.0" is Java 8
    if major < JAVA_MIN:
        raise UserError(f"Spark needs Java {JAVA_MIN} or later; {java} is Java {major or '?'}: "
                        "install a newer JDK or point JAVA_HOME at one")


def _reachable(url: str, scheme: str, default_port: int, what: str) -> None:
    """A UserError unless something listens at ``url``'s host and port (a fast check: Spark's
    own client would retry for minutes before failing)."""
    parsed = urlparse(url if "://" in url else f"{scheme}://{url}")
    if parsed.scheme not in (scheme, f"{scheme}s") or not parsed.hostname:
        if parsed.scheme in ("yarn", "k8s", "mesos"):
            return  # cluster managers: their clients know how to reach them
        raise UserError(f"{what}: {url!r} is not a {scheme}://host:port URL")
    host, port = parsed.hostname, parsed.port or default_port
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT):
            pass
    except OSError as e:
        raise UserError(f"cannot reach the {what} at {host}:{port} ({e.strerror or e}): check "
                        "the URL and that it is running") from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0][:300]
