"""threatscope enrich stage (see docs/architecture.md for its interface)."""
