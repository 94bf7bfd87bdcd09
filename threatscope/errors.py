"""Errors a user can act on. The CLI prints them as one line and exits non-zero."""


class UserError(Exception):
    """A mistake in how threatscope was called (missing file, unknown format, bad config)."""
