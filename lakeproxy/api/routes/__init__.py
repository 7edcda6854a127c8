"""Every route of the REST API, gathered from one module per noun."""

from lakeproxy.api.routes import branches, commits, meta, objects, refs, repositories
from lakeproxy.api.routing import Route

ROUTES: list[Route] = [
    *meta.ROUTES,
    *repositories.ROUTES,
    *branches.ROUTES,
    *commits.ROUTES,
    *refs.ROUTES,
    *objects.ROUTES,
]
