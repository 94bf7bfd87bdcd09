"""threatscope detect stage (see docs/architecture.md for its interface)."""
