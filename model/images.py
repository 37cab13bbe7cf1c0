"""Image references, parsed once by the registry grammar (`[domain/]path[:tag][@digest]`), for the config
checks, the components that derive images from a tag, the plan and the policy pack. Standard library only."""

from __future__ import annotations

import re
from dataclasses import dataclass

# The distribution reference grammar: path components of lower-case alphanumerics joined by `.`, `_`,
# `__` or dashes; a domain is the first component when it has a `.` or a `:` or is `localhost`.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[0-9a-fA-F]{32,}"
_REFERENCE = re.compile(
    rf"^(?:(?P<domain>{_DOMAIN})/)?(?P<path>{_COMPONENT}(?:/{_COMPONENT})*)(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?$")
_VERSION = re.compile(r"^v?(\d+)(?:\.(\d+))?(?:\.(\d+))?")
# The root component's input that says the stack set banyan:require_digests: the policy pack reads it there
# (a policy sees resources, not the stack's config).
REQUIRE_DIGESTS_PROP = "requireDigests"


@dataclass(frozen=True)
class ImageRef:
    """One parsed reference. `repository` is what precedes the tag (domain included, as written)."""

    repository: str
    tag: str | None
    digest: str | None

    @property
    def pinned(self) -> bool:
        """A fixed version: a tag other than `latest`, or a digest."""
        return self.digest is not None or (self.tag is not None and self.tag.lower() != "latest")

    def is_docker_official(self, name: str) -> bool:
        """Docker Hub's official image `name`, however the reference spells Docker Hub."""
        hub = ("", "library/", "docker.io/", "docker.io/library/", "index.docker.io/library/",
               "registry-1.docker.io/library/")
        return self.repository in {prefix + name for prefix in hub}

    def version(self) -> tuple[int, ...] | None:
        """The numbers the tag starts with (`16.9-alpine` -> (16, 9); `4.2.6-management` -> (4, 2, 6))."""
        match = _VERSION.match(self.tag or "")
        return None if match is None else tuple(int(n) for n in match.groups() if n is not None)


def parse_image(ref: str) -> ImageRef:
    """Parse `ref`; ValueError (with what is wrong) when it is not a reference Docker would accept."""
    match = _REFERENCE.match(ref)
    if match is None:
        raise ValueError(f"{ref!r} is not an image reference ([registry/]name[:tag][@sha256:digest], "
                         "lower-case name)")
    domain, path = match["domain"], match["path"]
    # `localhost:5000/app` or `registry.example.com/app`: a first component without `.`, `:` or the name
    # localhost is part of the path (Docker Hub's `library/postgres`), which the grammar already allows.
    if domain is not None and not ("." in domain or ":" in domain or domain == "localhost"):
        path, domain = f"{domain.lower()}/{path}", None
        if not re.fullmatch(rf"{_COMPONENT}(?:/{_COMPONENT})*", path):
            raise ValueError(f"{ref!r}: repository names are lower-case")
    repository = f"{domain}/{path}" if domain else path
    return ImageRef(repository=repository, tag=match["tag"], digest=match["digest"])
