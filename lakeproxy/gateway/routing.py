"""The S3 route table: (scope, method, discriminator) → operation name.

Routes are listed most specific first; the first match wins. Sub-resources lakeproxy does not
implement are listed too, so they answer NotImplemented (or, for bucket configurations that
are simply unset, the error a real S3 gives) instead of falling through to another operation.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass


class Scope(enum.Enum):
    SERVICE = "service"
    BUCKET = "bucket"
    OBJECT = "object"


@dataclass(frozen=True, slots=True)
class Route:
    scope: Scope
    method: str
    operation: str
    query: tuple[str, ...] = ()  # query parameters that must be present
    header: str | None = None  # a header that must be present


def _r(scope: Scope, method: str, operation: str, *query: str, header: str | None = None) -> Route:
    return Route(scope, method, operation, query, header)


S, B, OBJ = Scope.SERVICE, Scope.BUCKET, Scope.OBJECT

# Bucket configurations a real S3 reports as "not set" with these errors (status 404).
UNSET_BUCKET_CONFIG: Mapping[str, tuple[str, str]] = {
    "policy": ("NoSuchBucketPolicy", "The bucket policy does not exist"),
    "cors": ("NoSuchCORSConfiguration", "The CORS configuration does not exist"),
    "tagging": ("NoSuchTagSet", "The TagSet does not exist"),
    "lifecycle": ("NoSuchLifecycleConfiguration", "The lifecycle configuration does not exist"),
    "website": ("NoSuchWebsiteConfiguration", "The specified bucket does not have a website "
                "configuration"),
    "encryption": ("ServerSideEncryptionConfigurationNotFoundError",
                   "The server side encryption configuration was not found"),
    "replication": ("ReplicationConfigurationNotFoundError",
                    "The replication configuration was not found"),
    "object-lock": ("ObjectLockConfigurationNotFoundError",
                    "Object Lock configuration does not exist for this bucket"),
    "ownershipControls": ("OwnershipControlsNotFoundError",
                          "The bucket ownership controls were not found"),
    "publicAccessBlock": ("NoSuchPublicAccessBlockConfiguration",
                          "The public access block configuration was not found"),
}

_BUCKET_CONFIGS_NOT_IMPLEMENTED = (
    "versioning", "policy", "cors", "acl", "tagging", "lifecycle", "website", "encryption",
    "replication", "object-lock", "ownershipControls", "publicAccessBlock", "logging",
    "notification", "requestPayment", "accelerate", "analytics", "metrics", "inventory",
    "intelligent-tiering",
)

ROUTES: tuple[Route, ...] = (
    _r(S, "GET", "ListBuckets"),
    _r(S, "HEAD", "ListBuckets"),
    # Buckets
    _r(B, "GET", "GetBucketLocation", "location"),
    _r(B, "GET", "GetBucketVersioning", "versioning"),
    _r(B, "GET", "GetBucketAcl", "acl"),
    _r(B, "GET", "GetBucketLogging", "logging"),
    _r(B, "GET", "GetBucketNotification", "notification"),
    _r(B, "GET", "GetBucketRequestPayment", "requestPayment"),
    _r(B, "GET", "GetBucketAccelerate", "accelerate"),
    *(_r(B, "GET", f"UnsetBucketConfig:{name}", name) for name in UNSET_BUCKET_CONFIG),
    # Bucket configurations lakeproxy neither implements nor can report as unset: answering
    # them with a listing (the fallback GET) would hand clients a document they cannot parse.
    *(_r(B, "GET", "NotImplemented", name)
      for name in ("analytics", "metrics", "inventory", "intelligent-tiering", "policyStatus",
                   "metadataTable", "session")),
    _r(B, "GET", "ListMultipartUploads", "uploads"),
    _r(B, "GET", "ListObjectVersions", "versions"),
    _r(B, "GET", "ListObjectsV2", "list-type"),
    _r(B, "GET", "ListObjects"),
    _r(B, "HEAD", "HeadBucket"),
    *(_r(B, "PUT", "NotImplemented", name) for name in _BUCKET_CONFIGS_NOT_IMPLEMENTED),
    _r(B, "PUT", "CreateBucket"),
    *(_r(B, "DELETE", "NotImplemented", name) for name in _BUCKET_CONFIGS_NOT_IMPLEMENTED),
    _r(B, "DELETE", "DeleteBucket"),
    _r(B, "POST", "DeleteObjects", "delete"),
    _r(B, "POST", "NotImplemented"),
    # Objects
    _r(OBJ, "GET", "ListParts", "uploadId"),
    _r(OBJ, "GET", "GetObjectAcl", "acl"),
    _r(OBJ, "GET", "GetObjectTagging", "tagging"),
    *(_r(OBJ, "GET", "NotImplemented", name)
      for name in ("attributes", "torrent", "retention", "legal-hold")),
    _r(OBJ, "GET", "GetObject"),
    _r(OBJ, "HEAD", "HeadObject"),
    _r(OBJ, "PUT", "UploadPartCopy", "partNumber", "uploadId", header="x-amz-copy-source"),
    _r(OBJ, "PUT", "UploadPart", "partNumber", "uploadId"),
    # Half an UploadPart (uploadId or partNumber alone) is a broken UploadPart, never a
    # PutObject that would overwrite the key: UploadPart rejects it.
    _r(OBJ, "PUT", "UploadPart", "uploadId"),
    _r(OBJ, "PUT", "UploadPart", "partNumber"),
    *(_r(OBJ, "PUT", "NotImplemented", name)
      for name in ("acl", "tagging", "retention", "legal-hold")),
    _r(OBJ, "PUT", "CopyObject", header="x-amz-copy-source"),
    _r(OBJ, "PUT", "PutObject"),
    _r(OBJ, "POST", "CreateMultipartUpload", "uploads"),
    _r(OBJ, "POST", "CompleteMultipartUpload", "uploadId"),
    _r(OBJ, "POST", "NotImplemented"),
    _r(OBJ, "DELETE", "AbortMultipartUpload", "uploadId"),
    _r(OBJ, "DELETE", "NotImplemented", "tagging"),
    _r(OBJ, "DELETE", "DeleteObject"),
)


def scope_of(bucket: str, key: str) -> Scope:
    if not bucket:
        return Scope.SERVICE
    return Scope.OBJECT if key else Scope.BUCKET


def find_operation(
    scope: Scope, method: str, query: Mapping[str, str], headers: Mapping[str, str]
) -> str | None:
    """The operation a request asks for, or None when the method is not allowed there."""
    for route in ROUTES:
        if (
            route.scope is scope
            and route.method == method
            and all(q in query for q in route.query)
            and (route.header is None or route.header in headers)
        ):
            return route.operation
    return None
