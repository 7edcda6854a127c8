"""Errors only the S3 protocol knows (signatures, framing, XML). The wire table maps them."""

from __future__ import annotations

from lakeproxy.errors import InvalidArgument, LakeproxyError


class S3ProtocolError(LakeproxyError):
    """A request the S3 protocol rejects before the core is involved."""


class AccessDenied(S3ProtocolError):
    pass


class InvalidAccessKeyId(S3ProtocolError):
    pass


class SignatureDoesNotMatch(S3ProtocolError):
    pass


class RequestTimeTooSkewed(S3ProtocolError):
    pass


class ExpiredToken(S3ProtocolError):
    """A presigned URL used after its expiry."""


class AuthorizationHeaderMalformed(S3ProtocolError):
    pass


class AuthorizationQueryParametersError(S3ProtocolError):
    pass


class MissingSecurityHeader(S3ProtocolError):
    pass


class XAmzContentSHA256Mismatch(S3ProtocolError):
    pass


class BadDigest(S3ProtocolError):
    """Content-MD5 or an x-amz-checksum-* value does not match the received bytes."""


class InvalidDigest(S3ProtocolError):
    """A Content-MD5 or checksum header that is not well-formed."""


class IncompleteBody(S3ProtocolError):
    """Fewer bytes than Content-Length / x-amz-decoded-content-length announced."""


class MalformedXML(S3ProtocolError):
    pass


class MaxMessageLengthExceeded(S3ProtocolError):
    """A request document (XML) larger than the server accepts."""


class InvalidRequest(S3ProtocolError):
    pass


class MissingContentLength(S3ProtocolError):
    pass


class EntityTooLarge(S3ProtocolError):
    pass


class InvalidRange(S3ProtocolError):
    pass


class NotImplementedOperation(S3ProtocolError):
    pass


class MethodNotAllowed(S3ProtocolError):
    pass


class InvalidURI(InvalidArgument):
    """A path that does not decode to valid UTF-8 without NUL bytes."""


class InvalidBucketName(InvalidArgument):
    pass


class KeyTooLong(InvalidArgument):
    pass


class BucketNotEmpty(S3ProtocolError):
    pass
