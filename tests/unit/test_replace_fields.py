"""tooling/replace_fields.json: what replaces a Docker resource, derived from the provider's schema at build time."""

from __future__ import annotations

import json

import pytest

from tooling import replace_fields


def test_the_committed_data_agrees_with_the_providers_schema() -> None:
    if not replace_fields.SHARED_DOCKER_SCHEMA.exists():
        pytest.skip(f"no provider schema at {replace_fields.SHARED_DOCKER_SCHEMA} to compare with")
    fresh = replace_fields.document(replace_fields.SHARED_DOCKER_SCHEMA.read_text(), "../shared")
    committed = json.loads(replace_fields.DATA_FILE.read_text())
    assert committed["replace_on_change"] == fresh["replace_on_change"], (
        "stale: run `python -m tooling.replace_fields`")
    assert committed["source"]["sha256"] == fresh["source"]["sha256"]
    assert replace_fields.main(["--check"]) == 0


def test_what_the_plan_relies_on_is_in_it() -> None:
    data = replace_fields.load()
    container = data["docker:index/container:Container"]
    # A container's env, image and mounts replace it; its memory and restart policy are updated in place.
    assert {"envs", "image", "volumes", "uploads", "name"} <= container
    assert not {"memory", "memorySwap", "restart"} & container
    assert data["docker:index/volume:Volume"] >= {"name", "driver"}


def test_derive_reads_will_replace_on_changes() -> None:
    schema = {"name": "docker", "resources": {
        "docker:index/x:X": {"inputProperties": {"a": {"willReplaceOnChanges": True}, "b": {}}},
        "docker:index/y:Y": {"inputProperties": {"c": {}}}}}
    assert replace_fields.derive(schema) == {"docker:index/x:X": ["a"]}
