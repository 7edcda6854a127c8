"""The handlers of every S3 operation lakeproxy implements, and the grant each one needs."""

from __future__ import annotations

from dataclasses import dataclass

from lakeproxy.auth.model import Level, Principal
from lakeproxy.errors import AccessDenied
from lakeproxy.gateway.context import Handler
from lakeproxy.gateway.operations import buckets, listing, multipart, objects

OPERATIONS: dict[str, Handler] = {
    "ListBuckets": buckets.list_buckets,
    "HeadBucket": buckets.head_bucket,
    "GetBucketLocation": buckets.get_bucket_location,
    "GetBucketVersioning": buckets.get_bucket_versioning,
    "GetBucketAcl": buckets.get_bucket_acl,
    "GetBucketLogging": buckets.empty_config,
    "GetBucketNotification": buckets.empty_config,
    "GetBucketRequestPayment": buckets.empty_config,
    "GetBucketAccelerate": buckets.empty_config,
    "UnsetBucketConfig": buckets.unset_config,
    "CreateBucket": buckets.create_bucket,
    "DeleteBucket": buckets.delete_bucket,
    "ListObjects": listing.list_objects_v1,
    "ListObjectsV2": listing.list_objects_v2,
    "GetObject": objects.get_object,
    "HeadObject": objects.head_object,
    "PutObject": objects.put_object,
    "CopyObject": objects.copy_object,
    "DeleteObject": objects.delete_object,
    "DeleteObjects": objects.delete_objects,
    "CreateMultipartUpload": multipart.create_multipart_upload,
    "UploadPart": multipart.upload_part,
    "UploadPartCopy": multipart.upload_part_copy,
    "CompleteMultipartUpload": multipart.complete_multipart_upload,
    "AbortMultipartUpload": multipart.abort_multipart_upload,
    "ListParts": multipart.list_parts,
    "ListMultipartUploads": multipart.list_multipart_uploads,
    "NotImplemented": buckets.not_implemented,
}


@dataclass(frozen=True, slots=True)
class Access:
    """The grant an operation needs before its handler runs.

    `level` on the request's repository; `server_wide` asks it of the server instead (only a
    global admin has it); `level=None` admits any valid key (the handler shows only what the
    key sees).
    """

    level: Level | None
    server_wide: bool = False


READ = Access(Level.READ)
WRITE = Access(Level.WRITE)
REPOSITORY_ADMIN = Access(Level.ADMIN)
SERVER_ADMIN = Access(Level.ADMIN, server_wide=True)
ANY_KEY = Access(None)

# Every operation of the route table. CopyObject and UploadPartCopy also need READ on their
# source's repository: the handlers check it, as only they parse the source. DeleteObjects
# names keys of its bucket only, so WRITE on the bucket covers each of them (the handler checks
# each key again, so finer grants cannot be skipped there).
ACCESS: dict[str, Access] = {
    "ListBuckets": ANY_KEY,
    "HeadBucket": READ,
    "GetBucketLocation": READ,
    "GetBucketVersioning": READ,
    "GetBucketAcl": READ,
    "GetBucketLogging": READ,
    "GetBucketNotification": READ,
    "GetBucketRequestPayment": READ,
    "GetBucketAccelerate": READ,
    "UnsetBucketConfig": READ,
    "ListObjects": READ,
    "ListObjectsV2": READ,
    "ListObjectVersions": READ,
    "ListMultipartUploads": READ,
    "ListParts": READ,
    "GetObject": READ,
    "HeadObject": READ,
    "GetObjectAcl": READ,
    "GetObjectTagging": READ,
    "NotImplemented": READ,
    "PutObject": WRITE,
    "CopyObject": WRITE,
    "DeleteObject": WRITE,
    "DeleteObjects": WRITE,
    "CreateMultipartUpload": WRITE,
    "UploadPart": WRITE,
    "UploadPartCopy": WRITE,
    "CompleteMultipartUpload": WRITE,
    "AbortMultipartUpload": WRITE,
    "CreateBucket": SERVER_ADMIN,
    "DeleteBucket": REPOSITORY_ADMIN,
}


def authorize(principal: Principal, operation: str, bucket: str) -> None:
    """Raise AccessDenied unless `principal` may run `operation` on `bucket`.

    An operation missing from ACCESS is refused (fail closed). The check comes before the
    repository is looked up, so a key learns nothing about repositories it has no grant on.
    """
    access = ACCESS.get(operation.split(":", 1)[0])
    if access is None:
        raise AccessDenied(f"Access Denied: no access rule for the operation {operation}")
    if access.level is None:
        return
    principal.require(None if access.server_wide or not bucket else bucket, access.level)
