"""HTTP to lakeproxy's REST API (`/api/v1`, lakeFS compatible), with HTTP Basic auth."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any, BinaryIO
from urllib.parse import quote

import httpx

from lakeproxy import __version__

API_PREFIX = "/api/v1"
PAGE_SIZE = 1000
MAX_PAGES = 1_000_000
CHUNK_SIZE = 1 << 20

JSON = dict[str, Any]


class ApiError(Exception):
    """The server answered with an error status; `message` is its `{"message": …}`."""

    def __init__(self, status: int, message: str, body: object = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.body = body


class Unreachable(Exception):
    """No answer from the endpoint (refused, timed out, not HTTP)."""


def seg(text: str) -> str:
    """One URL path segment, percent-encoded."""
    return quote(text, safe="")


def _error_of(response: httpx.Response) -> ApiError:
    body: object = None
    message = response.reason_phrase or f"HTTP {response.status_code}"
    with contextlib.suppress(ValueError):
        body = response.json()
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        message = body["message"]
    elif body is None and response.text.strip():
        message = response.text.strip()[:500]
    return ApiError(response.status_code, message, body)


class ApiClient:
    """A thin, synchronous client: one method per endpoint the CLI uses."""

    def __init__(self, endpoint: str, access_key: str, secret_key: str, *,
                 timeout: float = 60.0) -> None:
        self.endpoint = endpoint.rstrip("/")
        self._http = httpx.Client(
            base_url=self.endpoint + API_PREFIX, auth=httpx.BasicAuth(access_key, secret_key),
            timeout=httpx.Timeout(timeout, connect=10.0),
            headers={"User-Agent": f"lake/{__version__}"}, follow_redirects=False,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- plumbing ---------------------------------------------------------------------------

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as e:
            raise Unreachable(f"{type(e).__name__}: {e}") from e
        if response.status_code >= 400:
            raise _error_of(response)
        return response

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.request(method, path, **kwargs)
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            return response.text

    def paginate(self, path: str, params: Mapping[str, Any] | None = None, *,
                 limit: int | None = None) -> Iterator[JSON]:
        """Every result of a paged listing, following `next_offset` while `has_more`."""
        query = {k: v for k, v in (params or {}).items() if v is not None}
        after: str | None = None
        seen = 0
        for _ in range(MAX_PAGES):
            amount = PAGE_SIZE if limit is None else max(1, min(PAGE_SIZE, limit - seen))
            page = self.json("GET", path, params={**query, "amount": amount,
                                                  **({"after": after} if after else {})})
            results = page.get("results") or []
            for item in results:
                yield item
                seen += 1
                if limit is not None and seen >= limit:
                    return
            pagination = page.get("pagination") or {}
            if not pagination.get("has_more"):
                return
            nxt = pagination.get("next_offset")
            if not nxt or nxt == after or not results:
                raise ApiError(500, f"the server's pagination of {path} does not advance "
                                    f"(next_offset={nxt!r})")
            after = nxt
        raise ApiError(500, f"more than {MAX_PAGES} pages from {path}")

    # -- repositories -----------------------------------------------------------------------

    def list_repositories(self, prefix: str | None = None) -> Iterator[JSON]:
        return self.paginate("/repositories", {"prefix": prefix})

    def create_repository(self, name: str, storage_namespace: str | None,
                          default_branch: str | None) -> JSON:
        body: JSON = {"name": name}
        if storage_namespace:
            body["storage_namespace"] = storage_namespace
        if default_branch:
            body["default_branch"] = default_branch
        return self.json("POST", "/repositories", json=body)

    def get_repository(self, name: str) -> JSON:
        return self.json("GET", f"/repositories/{seg(name)}")

    def delete_repository(self, name: str) -> None:
        self.request("DELETE", f"/repositories/{seg(name)}")

    # -- branches ---------------------------------------------------------------------------

    def _branch(self, repo: str, branch: str) -> str:
        return f"/repositories/{seg(repo)}/branches/{seg(branch)}"

    def list_branches(self, repo: str, *, show_hidden: bool = False,
                      prefix: str | None = None) -> Iterator[JSON]:
        return self.paginate(f"/repositories/{seg(repo)}/branches",
                             {"prefix": prefix, "show_hidden": "true" if show_hidden else None})

    def create_branch(self, repo: str, name: str, source: str) -> str:
        response = self.request("POST", f"/repositories/{seg(repo)}/branches",
                                json={"name": name, "source": source})
        return response.text.strip().strip('"')

    def get_branch(self, repo: str, branch: str) -> JSON:
        return self.json("GET", self._branch(repo, branch))

    def delete_branch(self, repo: str, branch: str) -> None:
        self.request("DELETE", self._branch(repo, branch))

    def reset_branch(self, repo: str, branch: str, kind: str, path: str | None = None) -> None:
        body: JSON = {"type": kind}
        if path is not None:
            body["path"] = path
        self.request("PUT", self._branch(repo, branch), json=body)

    def revert(self, repo: str, branch: str, ref: str, parent_number: int) -> None:
        self.request("POST", self._branch(repo, branch) + "/revert",
                     json={"ref": ref, "parent_number": parent_number})

    def cherry_pick(self, repo: str, branch: str, ref: str, parent_number: int | None) -> JSON:
        body: JSON = {"ref": ref}
        if parent_number is not None:
            body["parent_number"] = parent_number
        return self.json("POST", self._branch(repo, branch) + "/cherry-pick", json=body)

    def set_protection(self, repo: str, branch: str, protected: bool) -> None:
        self.request("PUT", self._branch(repo, branch) + "/protection",
                     json={"protected": protected})

    def diff_branch(self, repo: str, branch: str, prefix: str | None = None) -> Iterator[JSON]:
        return self.paginate(self._branch(repo, branch) + "/diff", {"prefix": prefix})

    # -- commits, refs ----------------------------------------------------------------------

    def commit(self, repo: str, branch: str, message: str, metadata: Mapping[str, str],
               allow_empty: bool = False) -> JSON:
        body: JSON = {"message": message, "metadata": dict(metadata)}
        if allow_empty:
            body["allow_empty"] = True
        return self.json("POST", self._branch(repo, branch) + "/commits", json=body)

    def get_commit(self, repo: str, ref: str) -> JSON:
        return self.json("GET", f"/repositories/{seg(repo)}/commits/{seg(ref)}")

    def log(self, repo: str, ref: str, *, limit: int | None,
            first_parent: bool = False) -> Iterator[JSON]:
        return self.paginate(f"/repositories/{seg(repo)}/refs/{seg(ref)}/commits",
                             {"first_parent": "true" if first_parent else None}, limit=limit)

    def diff_refs(self, repo: str, left: str, right: str, *, prefix: str | None = None,
                  two_dot: bool = False) -> Iterator[JSON]:
        return self.paginate(
            f"/repositories/{seg(repo)}/refs/{seg(left)}/diff/{seg(right)}",
            {"prefix": prefix, "type": "two_dot" if two_dot else None})

    def merge(self, repo: str, source: str, destination: str, *, strategy: str | None,
              message: str | None, metadata: Mapping[str, str]) -> JSON:
        body: JSON = {}
        if strategy:
            body["strategy"] = strategy
        if message:
            body["message"] = message
        if metadata:
            body["metadata"] = dict(metadata)
        return self.json("POST", f"/repositories/{seg(repo)}/refs/{seg(source)}/merge/"
                                 f"{seg(destination)}", json=body)

    # -- tags -------------------------------------------------------------------------------

    def list_tags(self, repo: str, prefix: str | None = None) -> Iterator[JSON]:
        return self.paginate(f"/repositories/{seg(repo)}/tags", {"prefix": prefix})

    def create_tag(self, repo: str, tag: str, ref: str) -> JSON:
        return self.json("POST", f"/repositories/{seg(repo)}/tags", json={"id": tag, "ref": ref})

    def delete_tag(self, repo: str, tag: str) -> None:
        self.request("DELETE", f"/repositories/{seg(repo)}/tags/{seg(tag)}")

    # -- objects ----------------------------------------------------------------------------

    def _objects(self, repo: str, ref: str) -> str:
        return f"/repositories/{seg(repo)}/refs/{seg(ref)}/objects"

    def list_objects(self, repo: str, ref: str, prefix: str, *,
                     recursive: bool) -> Iterator[JSON]:
        return self.paginate(self._objects(repo, ref) + "/ls",
                             {"prefix": prefix, "delimiter": None if recursive else "/"})

    def stat_object(self, repo: str, ref: str, path: str) -> JSON:
        return self.json("GET", self._objects(repo, ref) + "/stat", params={"path": path})

    @contextlib.contextmanager
    def open_object(self, repo: str, ref: str, path: str) -> Iterator[httpx.Response]:
        """A streaming GET of an object; read it with `iter_bytes`."""
        request = self._http.build_request("GET", self._objects(repo, ref),
                                           params={"path": path})
        try:
            response = self._http.send(request, stream=True)
        except httpx.HTTPError as e:
            raise Unreachable(f"{type(e).__name__}: {e}") from e
        try:
            if response.status_code >= 400:
                response.read()
                raise _error_of(response)
            yield response
        finally:
            response.close()

    def upload_object(self, repo: str, branch: str, path: str, source: BinaryIO, size: int, *,
                      content_type: str | None = None,
                      progress: Callable[[int], None] | None = None) -> JSON:
        """Stream `size` bytes from `source` as the object's raw body (never all in memory)."""

        def chunks() -> Iterator[bytes]:
            remaining = size
            while remaining > 0:
                chunk = source.read(min(CHUNK_SIZE, remaining))
                if not chunk:
                    raise OSError(f"{path}: the local file shrank while it was being uploaded")
                remaining -= len(chunk)
                if progress is not None:
                    progress(len(chunk))
                yield chunk

        headers = {"Content-Length": str(size),
                   "Content-Type": content_type or "application/octet-stream"}
        return self.json("POST", self._branch(repo, branch) + "/objects",
                         params={"path": path}, content=chunks(), headers=headers)

    def delete_object(self, repo: str, branch: str, path: str) -> None:
        self.request("DELETE", self._branch(repo, branch) + "/objects", params={"path": path})

    def delete_objects(self, repo: str, branch: str, paths: list[str]) -> list[JSON]:
        """Delete up to 1000 paths; returns the per-path errors."""
        result = self.json("POST", self._branch(repo, branch) + "/objects/delete",
                           json={"paths": paths})
        return list((result or {}).get("errors") or [])

    # -- access keys ------------------------------------------------------------------------

    def list_keys(self) -> Iterator[JSON]:
        return self.paginate("/auth/keys")

    def create_key(self, *, admin: bool, grants: Mapping[str, str], description: str) -> JSON:
        return self.json("POST", "/auth/keys", json={"admin": admin, "grants": dict(grants),
                                                     "description": description})

    def delete_key(self, access_key_id: str) -> None:
        self.request("DELETE", f"/auth/keys/{seg(access_key_id)}")
