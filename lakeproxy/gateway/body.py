"""The S3 request body decoder: framing, payload hashes, chunk signatures and checksums.

``RequestBody`` wraps the raw bytes of a request (an async iterator of chunks, e.g. aiohttp's
``request.content.iter_chunked(1 << 20)``) and yields the *decoded* payload::

    body = RequestBody(request.content.iter_chunked(1 << 20), auth, request.headers)
    async for piece in body:
        await staging.write(piece)
    # reached only when every check passed
    publish(size=body.size, checksums=body.checksums)

Every verification (hex SHA-256, chunk signatures, trailer signature, decoded length,
``x-amz-checksum-*`` header or trailer, ``Content-MD5``, ``Content-Length``) happens before
the iteration ends: a mismatch makes the last ``__anext__`` raise instead of
``StopAsyncIteration``, so a consumer that publishes only after a clean end never publishes
bad bytes. With signed chunks (``STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]``) each chunk's
signature is verified before any of its bytes are yielded.

Memory stays bounded: unsigned chunks are passed through as they arrive, a signed chunk is
held until its signature is checked (at most ``max_signed_chunk`` bytes), and chunk header
and trailer lines are limited to ``max_line`` bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import AsyncIterable, AsyncIterator

from lakeproxy.checksums import Hasher
from lakeproxy.gateway.errors import (
    BadDigest,
    EntityTooLarge,
    IncompleteBody,
    InvalidDigest,
    InvalidRequest,
    MissingContentLength,
    SignatureDoesNotMatch,
    XAmzContentSHA256Mismatch,
)
from lakeproxy.gateway.sigv4 import (
    EMPTY_SHA256,
    AuthContext,
    HeaderMultiMap,
    PayloadMode,
    sign_hex,
    signatures_equal,
    single_header,
)

MAX_LINE = 4096
MAX_SIGNED_CHUNK = 16 * 1024 * 1024
MAX_TRAILER_LINES = 8

CHECKSUM_SIZES = {"crc32": 4, "crc32c": 4, "crc64nvme": 8, "sha1": 20, "sha256": 32}
CHECKSUM_HEADER_PREFIX = "x-amz-checksum-"
TRAILER_SIGNATURE = "x-amz-trailer-signature"


def new_hasher(algorithm: str) -> Hasher:
    """A running hash for one of the S3 checksum algorithms (crc32, crc32c, crc64nvme, ...)."""
    return Hasher(algorithm)


def _decode_b64_digest(value: str, algorithm: str, what: str) -> bytes:
    try:
        digest = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidDigest(f"the {what} value is not valid base64") from None
    if len(digest) != CHECKSUM_SIZES.get(algorithm, 16):
        raise InvalidDigest(f"the {what} value has the wrong length for {algorithm}")
    return digest


def _checksum_algorithm(name: str) -> str | None:
    """'x-amz-checksum-crc32' -> 'crc32' (None when not a known checksum header)."""
    if not name.startswith(CHECKSUM_HEADER_PREFIX):
        return None
    algorithm = name[len(CHECKSUM_HEADER_PREFIX) :]
    return algorithm if algorithm in CHECKSUM_SIZES else None


class _Reader:
    """A small buffered reader over the raw source that enforces Content-Length."""

    def __init__(self, source: AsyncIterator[bytes], content_length: int | None) -> None:
        self._source = source
        self._content_length = content_length
        self._buf = bytearray()
        self._eof = False
        self.raw_count = 0

    async def fill(self) -> bool:
        """Append the next raw piece to the buffer; False at the end of the source."""
        while not self._eof:
            try:
                piece = await self._source.__anext__()
            except StopAsyncIteration:
                self._eof = True
                if self._content_length is not None and self.raw_count < self._content_length:
                    raise IncompleteBody(
                        "You did not provide the number of bytes specified by the "
                        "Content-Length HTTP header"
                    ) from None
                return False
            if not piece:
                continue
            self.raw_count += len(piece)
            if self._content_length is not None and self.raw_count > self._content_length:
                raise InvalidRequest("the request body is longer than its Content-Length")
            self._buf += piece
            return True
        return False

    async def readline(self, limit: int, *, eof_ok: bool = False) -> bytes | None:
        """One CRLF-terminated line without its CRLF (None at a clean EOF when eof_ok)."""
        start = 0
        while True:
            end = self._buf.find(b"\r\n", start)
            if end >= 0:
                if end > limit:
                    raise InvalidRequest("an aws-chunked header or trailer line is too long")
                line = bytes(self._buf[:end])
                del self._buf[: end + 2]
                if b"\r" in line or b"\n" in line:
                    raise InvalidRequest("aws-chunked lines must end with CRLF")
                return line
            if len(self._buf) > limit + 1:
                raise InvalidRequest("an aws-chunked header or trailer line is too long")
            start = max(0, len(self._buf) - 1)
            if not await self.fill():
                if eof_ok and not self._buf:
                    return None
                raise IncompleteBody("the aws-chunked body ended in the middle of a line")

    async def readexactly(self, n: int) -> bytes:
        while len(self._buf) < n:
            if not await self.fill():
                raise IncompleteBody("the aws-chunked body ended in the middle of a chunk")
        data = bytes(self._buf[:n])
        del self._buf[:n]
        return data

    async def read_some(self, n: int) -> bytes:
        """Between 1 and n bytes (n > 0), as soon as any are available."""
        if not self._buf and not await self.fill():
            raise IncompleteBody("the aws-chunked body ended in the middle of a chunk")
        data = bytes(self._buf[:n])
        del self._buf[: len(data)]
        return data

    async def expect_crlf(self) -> None:
        if await self.readexactly(2) != b"\r\n":
            raise InvalidRequest("an aws-chunked chunk is not followed by CRLF")

    async def at_eof(self) -> bool:
        return not self._buf and not await self.fill()


class RequestBody:
    """Decode and verify one request body; iterate it for the decoded payload bytes.

    After a complete iteration ``size`` is the decoded length, ``checksums`` maps each
    verified ``x-amz-checksum-*`` algorithm (header or trailer form) to its base64 value, and
    ``content_md5`` is the verified ``Content-MD5`` (base64) or None.

    Malformed headers raise from the constructor; everything about the bytes raises from
    ``__anext__``.
    """

    def __init__(
        self,
        source: AsyncIterator[bytes] | AsyncIterable[bytes],
        auth: AuthContext,
        headers: HeaderMultiMap,
        *,
        max_signed_chunk: int = MAX_SIGNED_CHUNK,
        max_line: int = MAX_LINE,
    ) -> None:
        self._source: AsyncIterator[bytes] = source.__aiter__()
        self._auth = auth
        self._max_signed_chunk = max_signed_chunk
        self._max_line = max_line
        self.size = 0
        self.checksums: dict[str, str] = {}
        self.content_md5: str | None = None

        mode = auth.payload_mode
        self._content_length = self._parse_content_length(headers)
        encodings = [
            token.strip().lower()
            for value in headers.getall("Content-Encoding", [])
            for token in value.split(",")
        ]
        self._chunked = mode.streaming or "aws-chunked" in encodings
        if self._chunked and mode is PayloadMode.SIGNED_SHA256:
            raise InvalidRequest(
                "an aws-chunked body needs a STREAMING-* or UNSIGNED-PAYLOAD x-amz-content-sha256"
            )
        if mode.signed_chunks and auth.decoded_length is None:
            raise MissingContentLength(
                "x-amz-decoded-content-length is required with signed aws-chunked bodies"
            )

        # The trailer (x-amz-trailer), only in the *-TRAILER modes.
        self._trailer_algorithm: str | None = None
        if auth.trailer is not None:
            if not mode.has_trailer:
                raise InvalidRequest(
                    "x-amz-trailer needs x-amz-content-sha256 STREAMING-*-PAYLOAD-TRAILER"
                )
            self._trailer_algorithm = _checksum_algorithm(auth.trailer)
            if self._trailer_algorithm is None:
                raise InvalidRequest(f"unsupported x-amz-trailer {auth.trailer!r}")
        elif mode is PayloadMode.STREAMING_SIGNED_TRAILER:
            raise InvalidRequest("STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER needs x-amz-trailer")

        # Header-form checksums.
        self._header_checksums: dict[str, bytes] = {}
        for algorithm in CHECKSUM_SIZES:
            name = CHECKSUM_HEADER_PREFIX + algorithm
            value = single_header(headers, name)
            if value is not None:
                self._header_checksums[algorithm] = _decode_b64_digest(value, algorithm, name)
        algorithms = set(self._header_checksums)
        if self._trailer_algorithm is not None:
            algorithms.add(self._trailer_algorithm)
        if len(algorithms) > 1:
            raise InvalidRequest("Expecting a single x-amz-checksum- header or trailer")
        sdk_algorithm = single_header(headers, "x-amz-sdk-checksum-algorithm")
        if sdk_algorithm is not None:
            if sdk_algorithm.lower() not in CHECKSUM_SIZES:
                raise InvalidRequest(f"unsupported x-amz-sdk-checksum-algorithm {sdk_algorithm}")
            if sdk_algorithm.lower() not in algorithms:
                raise InvalidRequest(
                    "x-amz-sdk-checksum-algorithm specified, but no corresponding "
                    "x-amz-checksum-* or x-amz-trailer headers were found."
                )

        md5 = single_header(headers, "Content-MD5")
        self._content_md5 = _decode_b64_digest(md5, "md5", "Content-MD5") if md5 else None
        if md5 is not None and not md5:
            raise InvalidDigest("the Content-MD5 value is empty")

        self._hashers: dict[str, Hasher] = {a: new_hasher(a) for a in algorithms}
        if mode is PayloadMode.SIGNED_SHA256 and "sha256" not in self._hashers:
            self._hashers["sha256"] = new_hasher("sha256")
        if self._content_md5 is not None:
            self._hashers["md5"] = hashlib.md5()

        self._gen = self._run()

    @staticmethod
    def _parse_content_length(headers: HeaderMultiMap) -> int | None:
        value = single_header(headers, "Content-Length")
        if value is None:
            return None
        if not value.isdigit() or not value.isascii() or len(value) > 18:
            raise InvalidRequest("Content-Length must be a non-negative integer")
        return int(value)

    def __aiter__(self) -> RequestBody:
        return self

    async def __anext__(self) -> bytes:
        return await self._gen.__anext__()

    async def aclose(self) -> None:
        await self._gen.aclose()

    # ----------------------------------------------------------------------------------------

    def _account(self, data: bytes) -> None:
        """Hash and count decoded bytes before they are yielded."""
        self.size += len(data)
        limit = self._auth.decoded_length if self._chunked else None
        if limit is not None and self.size > limit:
            raise InvalidRequest("the decoded body is longer than x-amz-decoded-content-length")
        for hasher in self._hashers.values():
            hasher.update(data)

    async def _run(self) -> AsyncIterator[bytes]:
        if not self._chunked:
            # Plain bodies pass through as received: no buffering, no copies.
            limit, received = self._content_length, 0
            async for data in self._source:
                if not data:
                    continue
                received += len(data)
                if limit is not None and received > limit:
                    raise InvalidRequest("the request body is longer than its Content-Length")
                self._account(data)
                yield data
            if limit is not None and received < limit:
                raise IncompleteBody(
                    "You did not provide the number of bytes specified by the "
                    "Content-Length HTTP header"
                )
            self._finish(trailers={})
            return

        reader = _Reader(self._source, self._content_length)
        signed = self._auth.payload_mode.signed_chunks
        previous = self._auth.seed_signature
        while True:
            line = await reader.readline(self._max_line)
            assert line is not None
            size, signature = self._parse_chunk_header(line, signed)
            if signed:
                assert signature is not None
                if size > self._max_signed_chunk:
                    raise EntityTooLarge(
                        f"a signed aws-chunked chunk is larger than {self._max_signed_chunk} bytes"
                    )
                data = await reader.readexactly(size)
                previous = self._verify_chunk(previous, signature, data)
                if size:
                    self._account(data)
                    yield data
            else:
                remaining = size
                while remaining:
                    data = await reader.read_some(min(remaining, 1 << 20))
                    remaining -= len(data)
                    self._account(data)
                    yield data
            if size == 0:
                break
            await reader.expect_crlf()
        trailers = await self._read_trailers(reader, previous)
        if not await reader.at_eof():
            raise InvalidRequest("data after the end of the aws-chunked body")
        self._finish(trailers)

    def _parse_chunk_header(self, line: bytes, signed: bool) -> tuple[int, str | None]:
        head, sep, extension = line.partition(b";")
        try:
            text = head.decode("ascii")
            if not text or len(text) > 16 or not all(c in "0123456789abcdefABCDEF" for c in text):
                raise ValueError
            size = int(text, 16)
        except (UnicodeDecodeError, ValueError):
            raise InvalidRequest("malformed aws-chunked chunk size") from None
        signature: str | None = None
        if sep:
            key, eq, value = extension.partition(b"=")
            if key != b"chunk-signature" or not eq:
                raise InvalidRequest("unsupported aws-chunked chunk extension")
            try:
                signature = value.decode("ascii").lower()
            except UnicodeDecodeError:
                signature = ""
            if len(signature) != 64 or not all(c in "0123456789abcdef" for c in signature):
                raise SignatureDoesNotMatch("malformed aws-chunked chunk-signature")
            if not signed:
                raise InvalidRequest("chunk signatures are not expected with this payload mode")
        elif signed:
            raise SignatureDoesNotMatch("an aws-chunked chunk carries no chunk-signature")
        return size, signature

    def _verify_chunk(self, previous: str, signature: str, data: bytes) -> str:
        auth = self._auth
        string_to_sign = "\n".join(
            [
                "AWS4-HMAC-SHA256-PAYLOAD",
                auth.amz_date,
                auth.scope,
                previous,
                EMPTY_SHA256,
                hashlib.sha256(data).hexdigest(),
            ]
        )
        if not signatures_equal(sign_hex(auth.signing_key, string_to_sign), signature):
            raise SignatureDoesNotMatch("an aws-chunked chunk signature does not match")
        return signature

    async def _read_trailers(self, reader: _Reader, previous: str) -> dict[str, str]:
        """Read the trailer section after the zero-size chunk, up to its empty line."""
        trailers: dict[str, str] = {}
        trailer_signature: str | None = None
        for _ in range(MAX_TRAILER_LINES + 2):
            # Some SDKs end the body right after the last trailer; accept a clean EOF there.
            line = await reader.readline(self._max_line, eof_ok=True)
            if not line:
                break
            name_b, colon, value_b = line.partition(b":")
            if not colon:
                raise InvalidRequest("malformed aws-chunked trailer line")
            try:
                name = name_b.decode("ascii").strip().lower()
                value = value_b.decode("ascii").strip()
            except UnicodeDecodeError:
                raise InvalidRequest("aws-chunked trailers must be ASCII") from None
            if name == TRAILER_SIGNATURE:
                if (
                    self._auth.payload_mode is not PayloadMode.STREAMING_SIGNED_TRAILER
                    or trailer_signature is not None
                ):
                    raise InvalidRequest("unexpected x-amz-trailer-signature")
                trailer_signature = value.lower()
                continue
            if name != self._auth.trailer:
                raise InvalidRequest(
                    f"the trailer {name!r} does not match x-amz-trailer {self._auth.trailer!r}"
                )
            if name in trailers:
                raise InvalidRequest(f"the trailer {name!r} appears twice")
            trailers[name] = value
        else:
            raise InvalidRequest("too many aws-chunked trailer lines")

        if self._auth.payload_mode is PayloadMode.STREAMING_SIGNED_TRAILER:
            if trailer_signature is None:
                raise SignatureDoesNotMatch("the x-amz-trailer-signature is missing")
            canonical = "".join(f"{name}:{value}\n" for name, value in sorted(trailers.items()))
            string_to_sign = "\n".join(
                [
                    "AWS4-HMAC-SHA256-TRAILER",
                    self._auth.amz_date,
                    self._auth.scope,
                    previous,
                    hashlib.sha256(canonical.encode("ascii")).hexdigest(),
                ]
            )
            expected = sign_hex(self._auth.signing_key, string_to_sign)
            if not signatures_equal(expected, trailer_signature):
                raise SignatureDoesNotMatch("the x-amz-trailer-signature does not match")
        if self._auth.trailer is not None and self._auth.trailer not in trailers:
            raise InvalidRequest(
                f"x-amz-trailer announced {self._auth.trailer!r} but the body has no such trailer"
            )
        return trailers

    def _finish(self, trailers: dict[str, str]) -> None:
        """Every end-of-body check; raises on the first mismatch."""
        auth = self._auth
        if self._chunked:
            if auth.decoded_length is not None and self.size != auth.decoded_length:
                raise IncompleteBody(
                    "the decoded body is shorter than x-amz-decoded-content-length"
                )
        elif auth.payload_mode is PayloadMode.SIGNED_SHA256:
            digest = self._hashers["sha256"].digest().hex()
            if not signatures_equal(digest, auth.expected_sha256 or ""):
                raise XAmzContentSHA256Mismatch(
                    "The provided 'x-amz-content-sha256' header does not match what was computed."
                )

        expected = dict(self._header_checksums)
        if self._trailer_algorithm is not None and auth.trailer is not None:
            name = auth.trailer
            expected[self._trailer_algorithm] = _decode_b64_digest(
                trailers[name], self._trailer_algorithm, name
            )
        verified: dict[str, str] = {}
        for algorithm, digest in expected.items():
            if self._hashers[algorithm].digest() != digest:
                raise BadDigest(
                    f"The {algorithm.upper()} you specified did not match the calculated checksum."
                )
            verified[algorithm] = base64.b64encode(digest).decode("ascii")
        if self._content_md5 is not None:
            if self._hashers["md5"].digest() != self._content_md5:
                raise BadDigest("The Content-MD5 you specified did not match what we received.")
            self.content_md5 = base64.b64encode(self._content_md5).decode("ascii")
        self.checksums = verified
