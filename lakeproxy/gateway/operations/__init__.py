"""The handlers of every S3 operation lakeproxy implements, by operation name."""

from __future__ import annotations

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
