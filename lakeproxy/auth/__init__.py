"""Access keys, their per-repository grants, and the checks that enforce them."""

from lakeproxy.auth.model import Level, Principal

__all__ = ["Level", "Principal"]
