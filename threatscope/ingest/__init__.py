"""threatscope ingest stage (see docs/architecture.md for its interface)."""
