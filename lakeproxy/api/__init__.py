"""The management REST API under /api/v1, compatible with lakeFS API v1 clients."""

from lakeproxy.api.app import create_api_app

__all__ = ["create_api_app"]
