"""Build the optional C extension (threatscope._native); all metadata is in pyproject.toml.

``optional=True``: without a C compiler the install still succeeds and ingest uses its pure
Arrow/DuckDB parsers (same results, slower)."""

from setuptools import Extension, setup

setup(ext_modules=[Extension(
    "threatscope._native", ["threatscope/_native.c", "threatscope/_patterns.c"],
    extra_compile_args=["-O2", "-std=c11", "-Wall", "-Wno-unknown-pragmas"], optional=True,
)])
