"""The checksums S3 clients send (CRC32, CRC32C, CRC64NVME, SHA1, SHA256), computed
incrementally; CRCs come from awscrt, the same native code the AWS SDKs use."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from awscrt import checksums as crt

from lakeproxy.errors import InvalidArgument

ALGORITHMS = ("crc32", "crc32c", "crc64nvme", "sha1", "sha256")


class _Crc:
    def __init__(self, fn: Callable[[bytes, int], int], width: int) -> None:
        self._fn = fn
        self._width = width
        self._value = 0

    def update(self, data: bytes) -> None:
        self._value = self._fn(data, self._value)

    def digest(self) -> bytes:
        return self._value.to_bytes(self._width, "big")


class Hasher:
    """An incremental checksum of one of the S3 algorithms."""

    def __init__(self, algorithm: str) -> None:
        name = algorithm.lower()
        self.algorithm = name
        if name == "crc32":
            self._impl: _Crc | hashlib._Hash = _Crc(crt.crc32, 4)
        elif name == "crc32c":
            self._impl = _Crc(crt.crc32c, 4)
        elif name == "crc64nvme":
            self._impl = _Crc(crt.crc64nvme, 8)
        elif name in ("sha1", "sha256"):
            self._impl = hashlib.new(name)
        else:
            raise InvalidArgument(
                f"unsupported checksum algorithm {algorithm!r}; use one of "
                + ", ".join(a.upper() for a in ALGORITHMS)
            )

    def update(self, data: bytes) -> None:
        self._impl.update(data)

    def digest(self) -> bytes:
        return self._impl.digest()


def digest(algorithm: str, data: bytes) -> bytes:
    """The checksum of `data` (big-endian bytes for the CRCs)."""
    hasher = Hasher(algorithm)
    hasher.update(data)
    return hasher.digest()
