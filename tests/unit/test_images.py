"""model.images: one parser of image references for the config checks, the components, the plan and the
policy pack."""

from __future__ import annotations

import pytest

from model.images import parse_image

DIGEST = "sha256:" + "0123456789abcdef" * 4


@pytest.mark.parametrize(("ref", "repository", "tag", "digest"), [
    ("nginx:1.27.3-alpine", "nginx", "1.27.3-alpine", None),
    ("registry.example.com:5000/team/app:1.4.2", "registry.example.com:5000/team/app", "1.4.2", None),
    ("localhost:5000/app:1", "localhost:5000/app", "1", None),
    ("library/postgres:16.9", "library/postgres", "16.9", None),
    (f"app@{DIGEST}", "app", None, DIGEST),
    (f"redis:7.4.6-alpine@{DIGEST}", "redis", "7.4.6-alpine", DIGEST),
    ("ghcr.io/cloudnative-pg/postgresql:16.9-standard-bookworm", "ghcr.io/cloudnative-pg/postgresql",
     "16.9-standard-bookworm", None),
    ("my_team/app__x:v1", "my_team/app__x", "v1", None),
])
def test_valid_references_split_into_their_parts(ref: str, repository: str, tag: str | None,
                                                 digest: str | None) -> None:
    image = parse_image(ref)
    assert (image.repository, image.tag, image.digest) == (repository, tag, digest)


@pytest.mark.parametrize("ref", ["", "Nginx:1.0", "nginx:1.0 ", "nginx::1", "nginx:-1", "-nginx:1", "nginx/:1",
                                 "nginx:1@sha256:xyz", "team//app:1", "app:" + "x" * 129])
def test_malformed_references_are_refused(ref: str) -> None:
    with pytest.raises(ValueError, match=r"image reference|lower-case"):
        parse_image(ref)


@pytest.mark.parametrize(("ref", "version"), [
    ("postgres:16.9-alpine", (16, 9)), ("rabbitmq:4.2.6-management", (4, 2, 6)), ("redis:8", (8,)),
    ("app:v1.2", (1, 2)), ("app:alpine", None), (f"app@{DIGEST}", None),
])
def test_version_is_the_numbers_the_tag_starts_with(ref: str, version: tuple[int, ...] | None) -> None:
    assert parse_image(ref).version() == version


@pytest.mark.parametrize(("ref", "official"), [
    ("postgres:16", True), ("library/postgres:16", True), ("docker.io/library/postgres:16", True),
    ("index.docker.io/library/postgres:16", True), ("ghcr.io/x/postgres:16", False), ("postgresx:16", False),
])
def test_docker_hub_official_image_however_spelt(ref: str, official: bool) -> None:
    assert parse_image(ref).is_docker_official("postgres") is official


@pytest.mark.parametrize(("ref", "pinned"), [("nginx:1.27", True), ("nginx:latest", False), ("nginx:LATEST", False),
                                             ("nginx", False), (f"nginx@{DIGEST}", True)])
def test_pinned_means_a_version_tag_or_a_digest(ref: str, pinned: bool) -> None:
    assert parse_image(ref).pinned is pinned
