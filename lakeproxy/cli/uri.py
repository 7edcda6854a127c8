"""`lake://REPO/REF/PATH` URIs (`lakefs://` is accepted too), parsed once at the edge."""

from __future__ import annotations

from dataclasses import dataclass

import typer

SCHEMES = ("lake", "lakefs")


@dataclass(frozen=True, slots=True)
class LakeURI:
    """A repository, optionally a ref in it, optionally a path under that ref."""

    repository: str
    ref: str | None = None
    path: str | None = None

    def __str__(self) -> str:
        parts = [self.repository]
        if self.ref is not None:
            parts.append(self.ref)
            if self.path is not None:
                parts.append(self.path)
        return "lake://" + "/".join(parts)


def parse_uri(text: str) -> LakeURI:
    """Split a `lake://` or `lakefs://` URI.

    Raises:
        ValueError: the text is not such a URI, or has an empty repository or ref segment.
    """
    scheme, sep, rest = text.partition("://")
    if not sep or scheme.lower() not in SCHEMES:
        raise ValueError(f"{text!r} is not a lake URI: write lake://REPOSITORY[/REF[/PATH]]")
    if "\x00" in rest:
        raise ValueError(f"{text!r} contains a NUL character")
    repository, _, remainder = rest.partition("/")
    if not repository:
        raise ValueError(f"{text!r} names no repository: write lake://REPOSITORY[/REF[/PATH]]")
    if not remainder:
        return LakeURI(repository)
    ref, slash, path = remainder.partition("/")
    if not ref:
        raise ValueError(f"{text!r} has an empty ref: write lake://{repository}/REF[/PATH]")
    return LakeURI(repository, ref, path if slash else None)




def require_ref(uri: LakeURI, what: str = "ref") -> str:
    """The ref of `uri`, or a usage error naming what the command needed there."""
    if uri.ref is None:
        raise typer.BadParameter(
            f"{uri} names no {what}: write lake://{uri.repository}/{what.upper()}",
            param_hint="URI")
    return uri.ref


def require_no_path(uri: LakeURI, what: str = "ref") -> None:
    """Reject a path where the command takes a repository and a ref only."""
    if uri.path:
        raise typer.BadParameter(
            f"{uri} has a path, but this command takes lake://{uri.repository}/{what.upper()}",
            param_hint="URI")


def require_path(uri: LakeURI) -> str:
    """The object path of `uri`, or a usage error."""
    require_ref(uri)
    if not uri.path:
        raise typer.BadParameter(
            f"{uri} names no object: write lake://{uri.repository}/{uri.ref}/PATH",
            param_hint="URI")
    return uri.path


def require_same_repository(*uris: LakeURI) -> str:
    """The one repository every URI names, or a usage error."""
    names = {u.repository for u in uris}
    if len(names) != 1:
        raise typer.BadParameter(
            "both URIs must name the same repository, got " + " and ".join(sorted(names)),
            param_hint="URI")
    return uris[0].repository
