"""threatscope analyze stage (see docs/architecture.md for its interface)."""
