"""Committed data: immutable, content-addressed trees of ranges (the metaranges)."""
