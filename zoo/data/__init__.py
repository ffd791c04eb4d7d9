"""Data sets that need no download, and loaders for data users bring."""
