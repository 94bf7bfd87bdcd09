"""threatscope simulate stage (see docs/architecture.md for its interface)."""
