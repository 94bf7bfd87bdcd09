"""threatscope report stage (see docs/architecture.md for its interface)."""
