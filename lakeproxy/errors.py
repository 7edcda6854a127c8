"""The one exception hierarchy of lakeproxy.

Nothing here knows about HTTP or S3: the gateway and the api map these classes to wire
errors in a single table each. Every error carries a message a user can act on, plus the
context (repository, ref, key, ...) as attributes.
"""

from __future__ import annotations

from collections.abc import Sequence


class LakeproxyError(Exception):
    """Base of every error lakeproxy raises on purpose."""

    def __init__(self, message: str, **context: object) -> None:
        super().__init__(message)
        self.message = message
        self.context = context

    def __str__(self) -> str:
        return self.message


class InvalidArgument(LakeproxyError):
    """The caller passed something malformed: a bad name, key, ref expression or option."""


class InvalidPart(InvalidArgument):
    """A multipart completion names a part that was not uploaded, or with another ETag."""


class InvalidPartOrder(InvalidArgument):
    """A multipart completion lists its parts out of ascending order."""


class EntityTooSmall(InvalidArgument):
    """A multipart part other than the last is smaller than the minimum part size."""


class NotFound(LakeproxyError):
    """Something named by the caller does not exist."""


class RepositoryNotFound(NotFound):
    pass


class BranchNotFound(NotFound):
    pass


class TagNotFound(NotFound):
    pass


class RefNotFound(NotFound):
    """A ref expression resolves to nothing (no such branch, tag or commit)."""


class CommitNotFound(RefNotFound):
    pass


class ObjectNotFound(NotFound):
    pass


class UploadNotFound(NotFound):
    """A multipart upload id is unknown (never created, completed or aborted)."""


class KeyNotFound(NotFound):
    """An access key id names no stored access key."""


class AlreadyExists(LakeproxyError):
    """A create would overwrite something that exists."""


class RepositoryExists(AlreadyExists):
    pass


class BranchExists(AlreadyExists):
    pass


class TagExists(AlreadyExists):
    pass


class Conflict(LakeproxyError):
    """The operation cannot be applied because of the current state."""


class MergeConflict(Conflict):
    """Both sides changed the same keys differently; `conflicts` lists every such key."""

    def __init__(self, message: str, conflicts: Sequence[str], **context: object) -> None:
        super().__init__(message, **context)
        self.conflicts = list(conflicts)


class UncommittedChanges(Conflict):
    """The branch has uncommitted changes and the operation needs a clean branch."""


class NoChanges(Conflict):
    """Nothing to commit or merge."""


class ConcurrentUpdate(Conflict):
    """A compare-and-swap lost its race too many times; retrying later is safe."""


class AccessDenied(LakeproxyError):
    """The caller's access key lacks the grant the operation needs."""


class ReadOnlyRef(LakeproxyError):
    """A write to a tag, a commit id, or a protected branch."""


class ProtectedBranch(ReadOnlyRef):
    pass


class PreconditionFailed(LakeproxyError):
    """A conditional operation found a state other than the one it expected."""


class ChecksumMismatch(InvalidArgument):
    """Received bytes do not match the checksum or length the client declared."""


class StorageError(LakeproxyError):
    """The block store or metadata store failed in a way the caller may retry."""


class ServiceUnavailable(StorageError):
    """A store cannot be reached right now (a lost connection, no free connection).

    The operation may or may not have been applied when a write gets this error; retrying
    later is safe for reads and for writes the caller can repeat.
    """
