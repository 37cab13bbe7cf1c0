"""Shared test helpers: where the shared material lives, and stack-config shortcuts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from infra.program import load_spec
from model.spec import PlatformSpec
from testkit import PROJECT_DIR, apply_sets, read_stack_file, to_engine_config

# CI lays shared/ beside the clone; a developer's checkout has it in the same place.
SHARED_DIR = PROJECT_DIR.parent / "shared"


def shared_file(*parts: str) -> Path:
    path = SHARED_DIR.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is not here (CI lays ../shared beside the clone); nothing to check against")
    return path


def spec_for(stack: str = "dev", **sets: Any) -> PlatformSpec:
    """Resolve a stack file plus what-if overrides (keys as for `--set`, dots as double underscores)."""
    config = apply_sets(read_stack_file(stack), {k.replace("__", "."): v for k, v in sets.items()})
    raw, secret = to_engine_config(config)
    return load_spec(raw, project="banyan", stack=stack, secret_keys=secret)
