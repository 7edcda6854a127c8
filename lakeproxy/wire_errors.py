"""The one table from exceptions to wire errors: HTTP status and S3 error code.

Lookup walks the exception's MRO, so a subclass that is not listed inherits its parent's
mapping; anything unknown is a 500 InternalError (and is logged by the caller).
"""

from __future__ import annotations

from dataclasses import dataclass

from lakeproxy import errors
from lakeproxy.gateway import errors as s3


@dataclass(frozen=True, slots=True)
class Wire:
    status: int
    s3_code: str


INTERNAL = Wire(500, "InternalError")

WIRE: dict[type[BaseException], Wire] = {
    errors.InvalidArgument: Wire(400, "InvalidArgument"),
    errors.ChecksumMismatch: Wire(400, "BadDigest"),
    errors.EntityTooSmall: Wire(400, "EntityTooSmall"),
    errors.InvalidPart: Wire(400, "InvalidPart"),
    errors.InvalidPartOrder: Wire(400, "InvalidPartOrder"),
    errors.NotFound: Wire(404, "NoSuchKey"),
    errors.RepositoryNotFound: Wire(404, "NoSuchBucket"),
    errors.RefNotFound: Wire(404, "NoSuchKey"),
    errors.ObjectNotFound: Wire(404, "NoSuchKey"),
    errors.UploadNotFound: Wire(404, "NoSuchUpload"),
    errors.KeyNotFound: Wire(404, "NoSuchKey"),
    errors.AlreadyExists: Wire(409, "Conflict"),
    errors.RepositoryExists: Wire(409, "BucketAlreadyOwnedByYou"),
    errors.Conflict: Wire(409, "Conflict"),
    errors.ConcurrentUpdate: Wire(503, "SlowDown"),
    errors.AccessDenied: Wire(403, "AccessDenied"),
    errors.ReadOnlyRef: Wire(403, "AccessDenied"),
    errors.PreconditionFailed: Wire(412, "PreconditionFailed"),
    errors.StorageError: Wire(503, "ServiceUnavailable"),
    errors.ServiceUnavailable: Wire(503, "ServiceUnavailable"),
    s3.AccessDenied: Wire(403, "AccessDenied"),
    s3.InvalidAccessKeyId: Wire(403, "InvalidAccessKeyId"),
    s3.SignatureDoesNotMatch: Wire(403, "SignatureDoesNotMatch"),
    s3.RequestTimeTooSkewed: Wire(403, "RequestTimeTooSkewed"),
    s3.ExpiredToken: Wire(403, "AccessDenied"),
    s3.AuthorizationHeaderMalformed: Wire(400, "AuthorizationHeaderMalformed"),
    s3.AuthorizationQueryParametersError: Wire(400, "AuthorizationQueryParametersError"),
    s3.MissingSecurityHeader: Wire(400, "MissingSecurityHeader"),
    s3.XAmzContentSHA256Mismatch: Wire(400, "XAmzContentSHA256Mismatch"),
    s3.BadDigest: Wire(400, "BadDigest"),
    s3.InvalidDigest: Wire(400, "InvalidDigest"),
    s3.IncompleteBody: Wire(400, "IncompleteBody"),
    s3.MalformedXML: Wire(400, "MalformedXML"),
    s3.MaxMessageLengthExceeded: Wire(400, "MaxMessageLengthExceeded"),
    s3.InvalidRequest: Wire(400, "InvalidRequest"),
    s3.MissingContentLength: Wire(411, "MissingContentLength"),
    s3.EntityTooLarge: Wire(400, "EntityTooLarge"),
    s3.InvalidRange: Wire(416, "InvalidRange"),
    s3.NotImplementedOperation: Wire(501, "NotImplemented"),
    s3.MethodNotAllowed: Wire(405, "MethodNotAllowed"),
    s3.InvalidURI: Wire(400, "InvalidURI"),
    s3.InvalidBucketName: Wire(400, "InvalidBucketName"),
    s3.KeyTooLong: Wire(400, "KeyTooLongError"),
    s3.BucketNotEmpty: Wire(409, "BucketNotEmpty"),
}


def wire_of(exc: BaseException) -> Wire:
    """The wire error of an exception: the entry of its nearest listed class."""
    for cls in type(exc).__mro__:
        found = WIRE.get(cls)
        if found is not None:
            return found
    return INTERNAL
