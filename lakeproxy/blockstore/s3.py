"""A block store in an S3 bucket, under a prefix, through aiobotocore.

Small objects go up in one PutObject; larger ones stream through a native multipart
upload, so memory stays bounded by one part. Multipart uploads of the gateway map to
native ones: the part ETags are read back with ListParts when completing, so any process
can complete an upload another one started.

Retries: botocore retries every request on throttling (503 SlowDown), 5xx answers, dropped
connections and timeouts, with jittered exponential backoff ("standard" mode, `max_attempts`
of the settings). Request bodies are always bytes in memory (one PutObject's body, or one
part), so each attempt sends them again whole. botocore does not retry the reading of an
answer's body: `get` resumes a body that broke off from its first missing byte. Requests whose
answer was lost may have been applied: a PutObject that finally fails deletes what it may have
stored, a multipart upload created after retries aborts the uploads its lost attempts started,
and a completion retried after its first attempt completed the upload is a success.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterable, AsyncIterator, Iterator, Sequence
from contextlib import AsyncExitStack
from typing import Any

import aiohttp
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    IncompleteReadError,
    ReadTimeoutError,
    ResponseStreamingError,
)

from lakeproxy.blockstore import (
    S3Settings,
    check_bucket_name,
    check_part_number,
    check_parts,
    check_path,
    check_prefix,
    check_range,
)
from lakeproxy.blockstore.base import BlockStat, PartInfo
from lakeproxy.errors import InvalidArgument, ObjectNotFound, StorageError, UploadNotFound

MiB = 1 << 20
MIN_PART_SIZE = 5 * MiB
"""S3's smallest part size (every part but the last)."""
DEFAULT_PART_SIZE = 8 * MiB
CHUNK_SIZE = MiB
"""`get` yields chunks of about this size."""

_NOT_FOUND = frozenset({"NoSuchKey", "NotFound", "404"})
_BAD_REQUEST = frozenset({"InvalidPart", "InvalidPartOrder", "EntityTooSmall", "InvalidArgument"})
# How the body of an answer breaks off: the connection dropped, or no byte came in time.
_BROKEN_BODY = (
    IncompleteReadError,
    ReadTimeoutError,
    ResponseStreamingError,
    aiohttp.ClientPayloadError,
    aiohttp.ClientConnectionError,
    ConnectionError,
    TimeoutError,
)


def _backoff(failures: int) -> float:
    """Seconds to wait before resuming after `failures` failures: jittered, exponential."""
    return random.uniform(0.5, 1.0) * min(2.0, 0.1 * 2 ** (failures - 1))


class S3BlockStore:
    """Objects stored as `<prefix>/<path>` keys of one S3 bucket.

    The client is created by `open` (or lazily by the first call) and released by `close`;
    `async with S3BlockStore(...)` does both.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        settings: S3Settings | None = None,
        *,
        multipart_threshold: int = DEFAULT_PART_SIZE,
        part_size: int = DEFAULT_PART_SIZE,
        max_attempts: int | None = None,
    ) -> None:
        """Describe the store; nothing is opened yet.

        Args:
            bucket: the bucket name.
            prefix: the folder of the bucket the namespace lives in ("" for the bucket root).
            settings: endpoint, region, credentials, timeouts and attempts (default: the
                AWS defaults).
            multipart_threshold: objects of at least this size are uploaded in parts.
            part_size: size of those parts, at least 5 MiB.
            max_attempts: attempts per request, retries included (default: the settings').

        Raises:
            InvalidArgument: for an invalid bucket name, prefix, part size, or an access
                key without its secret (or the reverse).
        """
        check_bucket_name(bucket)
        prefix = prefix.strip("/")
        if prefix:
            check_path(prefix)
        if part_size < MIN_PART_SIZE:
            raise InvalidArgument(f"the S3 part size must be at least {MIN_PART_SIZE} bytes")
        settings = settings or S3Settings()
        if (settings.access_key_id is None) != (settings.secret_access_key is None):
            raise InvalidArgument("give both the S3 access key id and secret, or neither")
        self.namespace = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
        self.bucket = bucket
        self._key_prefix = prefix + "/" if prefix else ""
        self._settings = settings
        self._threshold = multipart_threshold
        self._part_size = part_size
        self._max_attempts = settings.max_attempts if max_attempts is None else max_attempts
        if self._max_attempts < 1:
            raise InvalidArgument("max_attempts must be at least 1")
        self._stack: AsyncExitStack | None = None
        self._client: Any = None
        self._lock = asyncio.Lock()

    async def open(self) -> None:
        """Create the S3 client (no request is made); opening twice is harmless."""
        async with self._lock:
            if self._client is not None:
                return
            config = AioConfig(
                retries={"mode": "standard", "total_max_attempts": self._max_attempts},
                connect_timeout=self._settings.connect_timeout,
                read_timeout=self._settings.read_timeout,
            )
            s = self._settings
            stack = AsyncExitStack()
            self._client = await stack.enter_async_context(
                get_session().create_client(
                    "s3",
                    endpoint_url=s.endpoint_url,
                    region_name=s.region,
                    aws_access_key_id=s.access_key_id,
                    aws_secret_access_key=s.secret_access_key,
                    config=config,
                )
            )
            self._stack = stack

    async def close(self) -> None:
        """Close the client and its connections; the store can be opened again."""
        async with self._lock:
            stack, self._stack, self._client = self._stack, None, None
        if stack is not None:
            await stack.aclose()

    async def __aenter__(self) -> S3BlockStore:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _s3(self) -> Any:
        if self._client is None:
            await self.open()
        return self._client

    def _key(self, path: str) -> str:
        check_path(path)
        return self._key_prefix + path

    @contextlib.contextmanager
    def _errors(self, operation: str, path: str) -> Iterator[None]:
        """Map botocore and connection errors to lakeproxy errors, secrets left out."""
        try:
            yield
        except ClientError as e:
            error = e.response.get("Error", {})
            code, message = str(error.get("Code", "")), error.get("Message") or str(e)
            context = {"path": path, "namespace": self.namespace}
            if code in _NOT_FOUND:
                raise ObjectNotFound(f"no object at {path!r}", **context) from None
            if code == "NoSuchUpload":
                raise UploadNotFound(f"no multipart upload for {path!r}", **context) from None
            if code in _BAD_REQUEST:
                raise InvalidArgument(f"{operation} {path!r}: {code}: {message}", **context) from e
            raise StorageError(
                f"S3 {operation} of {path!r} in {self.namespace} failed: {code}: {message}",
                **context,
            ) from e
        except (BotoCoreError, aiohttp.ClientError, OSError) as e:
            raise StorageError(
                f"S3 {operation} of {path!r} in {self.namespace} failed: {type(e).__name__}: {e}",
                path=path,
                namespace=self.namespace,
            ) from e

    # -- objects -----------------------------------------------------------------------

    async def put(
        self, path: str, chunks: AsyncIterable[bytes], *, fresh: bool = False
    ) -> int:
        """Store the concatenation of `chunks` at `path` (`fresh` changes nothing: a PutObject
        is atomic anyway).

        Bodies under the multipart threshold go up in one PutObject; larger ones in parts
        of `part_size`, and the multipart upload is aborted if anything fails.

        Returns:
            The size of the object.

        Raises:
            InvalidArgument: for a malformed path.
            StorageError: when S3 fails (after retries).
        """
        key = self._key(path)
        client = await self._s3()
        buffer = bytearray()
        size = 0
        upload_id: str | None = None
        parts: list[dict[str, Any]] = []
        try:
            async for chunk in chunks:
                buffer += chunk
                size += len(chunk)
                if upload_id is None and len(buffer) >= self._threshold:
                    upload_id = await self.create_multipart(path)
                while upload_id is not None and len(buffer) >= self._part_size:
                    body = bytes(buffer[: self._part_size])
                    del buffer[: self._part_size]
                    parts.append(
                        await self._upload_part(key, path, upload_id, len(parts) + 1, body)
                    )
            if upload_id is None:
                # The body is in memory (bytes), so botocore can send it again on each retry.
                try:
                    with self._errors("put", path):
                        await client.put_object(Bucket=self.bucket, Key=key, Body=bytes(buffer))
                except BaseException:
                    # An attempt whose answer was lost (a timeout) may have stored the object.
                    with contextlib.suppress(Exception):
                        await asyncio.shield(self.delete(path))
                    raise
                return size
            if buffer or not parts:
                parts.append(await self._upload_part(key, path, upload_id, len(parts) + 1, buffer))
            await self._complete(key, path, upload_id, parts)
            return size
        except BaseException:
            if upload_id is not None:
                # Shielded: the abort must go out even if we are cancelled again meanwhile.
                with contextlib.suppress(Exception):
                    await asyncio.shield(self.abort_multipart(path, upload_id))
            raise

    async def get(
        self, path: str, *, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        """Stream bytes [`start`, `end`) of the object with a ranged GetObject.

        An `end` past the size is clamped to it; a `start` at or past it yields nothing.
        An answer that breaks off mid-body (a dropped connection, a read timeout) is resumed
        from the first missing byte, up to the store's attempts; what is yielded is the exact
        byte range or, when it cannot be completed, an error, never a shorter body.

        Raises:
            ObjectNotFound: when there is no object at `path`.
            InvalidArgument: for a malformed path or range.
            StorageError: when S3 fails (after retries and resumptions).
        """
        check_range(start, end)
        key = self._key(path)
        if end == start:
            if await self.stat(path) is None:
                raise ObjectNotFound(f"no object at {path!r}", path=path)
            return
        pending = bytearray()
        async with contextlib.aclosing(self._read_span(path, key, start, end)) as pieces:
            async for data in pieces:
                pending += data
                while len(pending) >= CHUNK_SIZE:
                    yield bytes(pending[:CHUNK_SIZE])
                    del pending[:CHUNK_SIZE]
        if pending:
            yield bytes(pending)

    async def _read_span(
        self, path: str, key: str, start: int, end: int | None
    ) -> AsyncIterator[bytes]:
        """The bytes [`start`, `end`) as they arrive, resuming a body that broke off.

        botocore retries a request until its answer's headers arrive, but not the reading of
        the body; a resumed request asks for the missing range of the same object (If-Match
        the first answer's ETag).
        """
        position, stop, etag, failures = start, end, None, 0
        while stop is None or position < stop:
            response = await self._get_object(path, key, position, stop, etag)
            if response is None:
                return  # the object exists and `start` is at or past its end
            if etag is None:
                etag = response.get("ETag")
                stop = position + int(response["ContentLength"])
            body = response["Body"]
            try:
                while position < stop:
                    data = await body.read(CHUNK_SIZE)
                    if not data:
                        raise IncompleteReadError(actual_bytes=position, expected_bytes=stop)
                    position += len(data)
                    yield data
            except _BROKEN_BODY as e:
                failures += 1
                if failures >= self._max_attempts:
                    raise StorageError(
                        f"S3 get of {path!r} in {self.namespace} broke off at byte {position} "
                        f"of [{start}, {stop}) {failures} times: {type(e).__name__}: {e}",
                        path=path,
                        namespace=self.namespace,
                    ) from e
                await asyncio.sleep(_backoff(failures))
            finally:
                body.close()

    async def _get_object(
        self, path: str, key: str, start: int, end: int | None, etag: str | None
    ) -> dict[str, Any] | None:
        """GetObject of [`start`, `end`); None when `start` is at or past the object's end."""
        client = await self._s3()
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if start or end is not None:
            args["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
        if etag is not None:
            args["IfMatch"] = etag
        with self._errors("get", path):
            try:
                response: dict[str, Any] = await client.get_object(**args)
            except ClientError as e:
                if e.response.get("Error", {}).get("Code") == "InvalidRange":
                    return None
                raise
        return response

    async def stat(self, path: str) -> BlockStat | None:
        """Size of the object at `path` (HeadObject), or None if there is none."""
        key = self._key(path)
        client = await self._s3()
        try:
            with self._errors("stat", path):
                response = await client.head_object(Bucket=self.bucket, Key=key)
        except ObjectNotFound:
            return None
        return BlockStat(path, int(response["ContentLength"]))

    async def delete(self, path: str) -> None:
        """Delete the object; deleting a missing object is not an error."""
        key = self._key(path)
        client = await self._s3()
        with self._errors("delete", path):
            await client.delete_object(Bucket=self.bucket, Key=key)

    async def list(self, prefix: str = "") -> AsyncIterator[BlockStat]:
        """Yield every object whose path starts with `prefix`, in path order (ListObjectsV2).

        Raises:
            InvalidArgument: for a malformed prefix.
            StorageError: when S3 fails.
        """
        check_prefix(prefix)
        client = await self._s3()
        paginator = client.get_paginator("list_objects_v2")
        pages = paginator.paginate(Bucket=self.bucket, Prefix=self._key_prefix + prefix)
        skip = len(self._key_prefix)
        with self._errors("list", prefix):
            async for page in pages:
                for item in page.get("Contents", ()):
                    path = item["Key"][skip:]
                    if path and not path.endswith("/"):  # skip folder markers
                        yield BlockStat(path, int(item["Size"]))

    # -- multipart ---------------------------------------------------------------------

    async def create_multipart(self, path: str) -> str:
        """Start a native multipart upload that will end up at `path`; returns its id."""
        key = self._key(path)
        client = await self._s3()
        with self._errors("create multipart upload", path):
            response = await client.create_multipart_upload(Bucket=self.bucket, Key=key)
        upload_id = str(response["UploadId"])
        if response.get("ResponseMetadata", {}).get("RetryAttempts"):
            await self._abort_strays(key, path, upload_id)
        return upload_id

    async def _abort_strays(self, key: str, path: str, keep: str) -> None:
        """Abort the uploads to `key` other than `keep`: attempts whose answer was lost.

        Paths are unique per upload, so any other upload to `key` was started by this call.
        Best effort: a stray left behind is invisible and costs only its storage.
        """
        client = await self._s3()
        with contextlib.suppress(StorageError, UploadNotFound):
            with self._errors("list multipart uploads", path):
                response = await client.list_multipart_uploads(Bucket=self.bucket, Prefix=key)
            for upload in response.get("Uploads", ()):
                if upload.get("Key") == key and upload.get("UploadId") != keep:
                    await self.abort_multipart(path, str(upload["UploadId"]))

    async def _upload_part(
        self, key: str, path: str, upload_id: str, number: int, body: bytes | bytearray
    ) -> dict[str, Any]:
        client = await self._s3()
        with self._errors("upload part", path):
            response = await client.upload_part(
                Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=bytes(body)
            )
        return {"PartNumber": number, "ETag": response["ETag"]}

    async def put_part(
        self, path: str, upload_id: str, part_number: int, chunks: AsyncIterable[bytes],
        *, size: int | None = None,
    ) -> PartInfo:
        """Store one part (1..10000) of an upload; storing it again replaces it.

        The part is buffered in memory: UploadPart needs its length up front.

        Raises:
            UploadNotFound: for an unknown upload id.
            InvalidArgument: for a part number out of range, or a body whose length is not
                the announced `size`.
        """
        check_part_number(part_number)
        key = self._key(path)
        body = bytearray()
        async for chunk in chunks:
            body += chunk
            if size is not None and len(body) > size:
                raise InvalidArgument(f"part {part_number} is longer than {size} bytes")
        if size is not None and len(body) != size:
            raise InvalidArgument(f"part {part_number} has {len(body)} bytes, not {size}")
        await self._upload_part(key, path, upload_id, part_number, body)
        return PartInfo(part_number, len(body))

    async def _list_parts(self, key: str, path: str, upload_id: str) -> dict[int, dict[str, Any]]:
        client = await self._s3()
        paginator = client.get_paginator("list_parts")
        found: dict[int, dict[str, Any]] = {}
        with self._errors("list parts", path):
            async for page in paginator.paginate(Bucket=self.bucket, Key=key, UploadId=upload_id):
                for part in page.get("Parts", ()):
                    found[int(part["PartNumber"])] = part
        return found

    async def complete_multipart(self, path: str, upload_id: str, parts: Sequence[int]) -> int:
        """Join the given parts, in ascending order, into the object at `path`.

        When a completion attempt whose answer was lost did complete the upload, the retry's
        NoSuchUpload is a success: paths are unique per upload, so an object of `len(parts)`
        parts at `path` can only be this upload's.

        Returns:
            The size of the object.

        Raises:
            UploadNotFound: for an unknown upload id.
            InvalidArgument: for a missing part, parts out of ascending order, or a part
                other than the last under 5 MiB.
        """
        check_parts(parts)
        key = self._key(path)
        uploaded = await self._list_parts(key, path, upload_id)
        for number in parts:
            if number not in uploaded:
                raise InvalidArgument(f"part {number} was not uploaded", part_number=number)
        chosen = [{"PartNumber": n, "ETag": uploaded[n]["ETag"]} for n in parts]
        earlier = await self._complete(key, path, upload_id, chosen)
        return earlier if earlier is not None else sum(int(uploaded[n]["Size"]) for n in parts)

    async def _complete(
        self, key: str, path: str, upload_id: str, parts: list[dict[str, Any]]
    ) -> int | None:
        """CompleteMultipartUpload with `parts`. None once done; the object's size when an
        earlier attempt, whose answer was lost, had completed it already."""
        client = await self._s3()
        try:
            with self._errors("complete multipart upload", path):
                await client.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=key,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                )
        except UploadNotFound:
            return await self._completed_size(key, path, upload_id, len(parts))
        return None

    async def _completed_size(self, key: str, path: str, upload_id: str, count: int) -> int:
        """The size of the object an earlier completion of the upload made, if there is one.

        Raises:
            UploadNotFound: when no object of `count` parts is at `path`.
        """
        client = await self._s3()
        try:
            with self._errors("stat", path):
                response = await client.head_object(Bucket=self.bucket, Key=key)
        except ObjectNotFound:
            response = None
        if response is None or not str(response.get("ETag", "")).strip('"').endswith(f"-{count}"):
            raise UploadNotFound(
                f"no multipart upload {upload_id!r} for {path!r}",
                path=path,
                namespace=self.namespace,
            )
        return int(response["ContentLength"])

    async def abort_multipart(self, path: str, upload_id: str) -> None:
        """Discard an upload and its parts; aborting an unknown upload is not an error."""
        key = self._key(path)
        client = await self._s3()
        with contextlib.suppress(UploadNotFound), self._errors("abort multipart upload", path):
            await client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)

    def local_path(self, path: str) -> str | None:
        """Always None: S3 objects are not local files."""
        return None
