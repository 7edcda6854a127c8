"""The S3 route table: (scope, method, query, headers) -> operation, and its handlers."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict

from lakeproxy.gateway.context import parse_query
from lakeproxy.gateway.operations import OPERATIONS
from lakeproxy.gateway.routing import (
    ROUTES,
    UNSET_BUCKET_CONFIG,
    Scope,
    find_operation,
    scope_of,
)

S, B, OB = Scope.SERVICE, Scope.BUCKET, Scope.OBJECT
COPY = {"x-amz-copy-source": "/repo/main/src"}

CASES: list[tuple[Scope, str, str, dict[str, str], str | None]] = [
    # service
    (S, "GET", "", {}, "ListBuckets"),
    (S, "HEAD", "", {}, "ListBuckets"),
    (S, "GET", "x-id=ListBuckets", {}, "ListBuckets"),
    (S, "PUT", "", {}, None),
    (S, "POST", "", {}, None),
    (S, "DELETE", "", {}, None),
    # bucket reads
    (B, "GET", "", {}, "ListObjects"),
    (B, "GET", "delimiter=%2F&prefix=&marker=a", {}, "ListObjects"),
    (B, "GET", "list-type=2", {}, "ListObjectsV2"),
    (B, "GET", "list-type=2&encoding-type=url&max-keys=1&delimiter=%2F", {}, "ListObjectsV2"),
    (B, "GET", "location", {}, "GetBucketLocation"),
    (B, "GET", "location=", {}, "GetBucketLocation"),
    (B, "GET", "versioning", {}, "GetBucketVersioning"),
    (B, "GET", "acl", {}, "GetBucketAcl"),
    (B, "GET", "logging", {}, "GetBucketLogging"),
    (B, "GET", "notification", {}, "GetBucketNotification"),
    (B, "GET", "requestPayment", {}, "GetBucketRequestPayment"),
    (B, "GET", "accelerate", {}, "GetBucketAccelerate"),
    (B, "GET", "uploads", {}, "ListMultipartUploads"),
    (B, "GET", "uploads&prefix=main%2F", {}, "ListMultipartUploads"),
    (B, "GET", "versions", {}, "ListObjectVersions"),
    (B, "HEAD", "", {}, "HeadBucket"),
    # bucket configurations that are simply unset: the error a real S3 gives
    *((B, "GET", name, {}, f"UnsetBucketConfig:{name}") for name in UNSET_BUCKET_CONFIG),
    # ... or not implemented at all (never a listing)
    *((B, "GET", name, {}, "NotImplemented")
      for name in ("analytics", "metrics", "inventory", "intelligent-tiering",
                   "policyStatus")),
    # bucket writes
    (B, "PUT", "", {}, "CreateBucket"),
    *((B, "PUT", name, {}, "NotImplemented")
      for name in ("versioning", "policy", "cors", "acl", "tagging", "lifecycle", "website",
                   "encryption", "replication", "object-lock", "ownershipControls",
                   "publicAccessBlock", "logging", "notification", "requestPayment",
                   "accelerate")),
    (B, "DELETE", "", {}, "DeleteBucket"),
    *((B, "DELETE", name, {}, "NotImplemented")
      for name in ("policy", "cors", "tagging", "lifecycle", "website", "encryption")),
    (B, "POST", "delete", {}, "DeleteObjects"),
    (B, "POST", "delete=", {}, "DeleteObjects"),
    (B, "POST", "", {}, "NotImplemented"),  # browser POST uploads are not supported
    (B, "PATCH", "", {}, None),
    (B, "OPTIONS", "", {}, None),
    # object reads
    (OB, "GET", "", {}, "GetObject"),
    (OB, "GET", "x-id=GetObject", {}, "GetObject"),
    (OB, "GET", "versionId=null", {}, "GetObject"),
    (OB, "GET", "response-content-type=text%2Fplain", {}, "GetObject"),
    (OB, "GET", "partNumber=1", {}, "GetObject"),  # the handler answers NotImplemented
    (OB, "GET", "uploadId=abc", {}, "ListParts"),
    (OB, "GET", "uploadId=abc&max-parts=2&part-number-marker=1", {}, "ListParts"),
    (OB, "GET", "acl", {}, "GetObjectAcl"),
    (OB, "GET", "tagging", {}, "GetObjectTagging"),
    (OB, "GET", "attributes", {}, "NotImplemented"),
    (OB, "GET", "torrent", {}, "NotImplemented"),
    (OB, "GET", "retention", {}, "NotImplemented"),
    (OB, "GET", "legal-hold", {}, "NotImplemented"),
    (OB, "HEAD", "", {}, "HeadObject"),
    (OB, "HEAD", "versionId=null", {}, "HeadObject"),
    # object writes
    (OB, "PUT", "", {}, "PutObject"),
    (OB, "PUT", "x-id=PutObject", {}, "PutObject"),
    (OB, "PUT", "", COPY, "CopyObject"),
    (OB, "PUT", "", {"X-Amz-Copy-Source": "/repo/main/src"}, "CopyObject"),
    (OB, "PUT", "partNumber=1&uploadId=abc", {}, "UploadPart"),
    (OB, "PUT", "uploadId=abc&partNumber=1", COPY, "UploadPartCopy"),
    (OB, "PUT", "uploadId=abc", {}, "UploadPart"),  # broken UploadPart, never a PutObject
    (OB, "PUT", "partNumber=1", {}, "UploadPart"),
    (OB, "PUT", "uploadId=abc", COPY, "UploadPart"),
    *((OB, "PUT", name, {}, "NotImplemented")
      for name in ("acl", "tagging", "retention", "legal-hold")),
    (OB, "POST", "uploads", {}, "CreateMultipartUpload"),
    (OB, "POST", "uploads=", {}, "CreateMultipartUpload"),
    (OB, "POST", "uploadId=abc", {}, "CompleteMultipartUpload"),
    (OB, "POST", "restore", {}, "NotImplemented"),
    (OB, "POST", "select&select-type=2", {}, "NotImplemented"),
    (OB, "POST", "", {}, "NotImplemented"),
    (OB, "DELETE", "", {}, "DeleteObject"),
    (OB, "DELETE", "versionId=null", {}, "DeleteObject"),
    (OB, "DELETE", "uploadId=abc", {}, "AbortMultipartUpload"),
    (OB, "DELETE", "tagging", {}, "NotImplemented"),
    (OB, "PATCH", "", {}, None),
    (OB, "OPTIONS", "", {}, None),
    (OB, "TRACE", "", {}, None),
]


def _id(case: tuple[Scope, str, str, dict[str, str], str | None]) -> str:
    scope, method, query, headers, _ = case
    return f"{scope.value}-{method}-{query or '_'}{'-copy' if headers else ''}"


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_route(case: tuple[Scope, str, str, dict[str, str], str | None]) -> None:
    scope, method, query, headers, expected = case
    assert find_operation(scope, method, parse_query(query), CIMultiDict(headers)) == expected


@pytest.mark.parametrize(("bucket", "key", "scope"), [
    ("", "", S), ("repo", "", B), ("repo", "main", OB), ("repo", "main/x", OB),
    ("repo", "main/", OB),
])
def test_scope_of(bucket: str, key: str, scope: Scope) -> None:
    assert scope_of(bucket, key) is scope


def test_every_routed_operation_has_a_handler_or_is_not_implemented() -> None:
    """Operations without a handler answer 501 NotImplemented from dispatch; list them here
    so adding a route without its handler is a decision, not an accident."""
    missing = {r.operation.split(":", 1)[0] for r in ROUTES} - set(OPERATIONS)
    assert missing == {"GetObjectAcl", "GetObjectTagging", "ListObjectVersions"}


def test_unset_configs_use_the_s3_error_codes() -> None:
    assert UNSET_BUCKET_CONFIG["policy"][0] == "NoSuchBucketPolicy"
    assert UNSET_BUCKET_CONFIG["cors"][0] == "NoSuchCORSConfiguration"
    assert UNSET_BUCKET_CONFIG["tagging"][0] == "NoSuchTagSet"
    assert UNSET_BUCKET_CONFIG["lifecycle"][0] == "NoSuchLifecycleConfiguration"
    assert UNSET_BUCKET_CONFIG["website"][0] == "NoSuchWebsiteConfiguration"


def test_query_parameter_names_are_case_sensitive() -> None:
    # S3 sub-resources are case-sensitive: ?UPLOADS is an unknown parameter (a listing)
    assert find_operation(B, "GET", parse_query("UPLOADS"), CIMultiDict()) == "ListObjects"
    assert find_operation(OB, "POST", parse_query("Uploads"), CIMultiDict()) == "NotImplemented"


def test_no_route_is_shadowed() -> None:
    """Every route can be reached: no earlier route matches all of its requests."""
    for i, route in enumerate(ROUTES):
        query = {q: "" for q in route.query}
        headers = CIMultiDict({route.header: "x"} if route.header else {})
        found = find_operation(route.scope, route.method, query, headers)
        assert found == route.operation, (i, route, found)
