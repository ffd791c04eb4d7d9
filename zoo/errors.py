"""Errors the project raises on bad input: each names the problem and how to fix it."""


class DataError(ValueError):
    """A data file or data argument is missing, unreadable or malformed."""
