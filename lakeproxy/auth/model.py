"""Who is calling and what they may do: grant levels and the principal of a request."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from lakeproxy.errors import AccessDenied, InvalidArgument


class Level(enum.IntEnum):
    """What a grant on a repository allows; each level includes the ones below it."""

    READ = 1
    WRITE = 2
    ADMIN = 3

    @classmethod
    def parse(cls, text: str) -> Level:
        """The level named `text` ("read", "write" or "admin", any case).

        Raises:
            InvalidArgument: for any other text.
        """
        try:
            return cls[text.strip().upper()]
        except (KeyError, AttributeError):
            raise InvalidArgument(
                f"unknown grant level {text!r}: use read, write or admin"
            ) from None

    @property
    def label(self) -> str:
        return self.name.lower()


_NO_GRANTS: Mapping[str, Level] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Principal:
    """The owner of an access key, as a request sees it."""

    access_key_id: str
    admin: bool = False  # global admin: may do everything, sees every repository
    grants: Mapping[str, Level] = field(default_factory=lambda: _NO_GRANTS)  # repo -> level

    def __hash__(self) -> int:
        return hash((self.access_key_id, self.admin, frozenset(self.grants.items())))

    def allows(self, repository: str | None, level: Level) -> bool:
        """Whether this principal may act at `level` on `repository` (None: server-wide)."""
        if self.admin:
            return True
        if repository is None:
            return False
        granted = self.grants.get(repository)
        return granted is not None and granted >= level

    def require(self, repository: str | None, level: Level) -> None:
        """Raise AccessDenied unless `allows(repository, level)`."""
        if not self.allows(repository, level):
            where = "server-wide" if repository is None else f"on repository {repository!r}"
            raise AccessDenied(
                f"Access Denied: the access key {self.access_key_id} has no "
                f"{Level(level).label} access {where}",
                repository=repository, level=Level(level).label,
            )

    def sees(self, repository: str) -> bool:
        """Whether any grant names `repository` (or the principal is a global admin)."""
        return self.admin or repository in self.grants
