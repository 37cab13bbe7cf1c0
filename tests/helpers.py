"""Shared test helpers: where the shared material lives, stack-config shortcuts, and what a recorded
container carries (its environment, its uploaded files)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, NamedTuple

import pulumi
import pytest

from model.spec import PlatformSpec
from testkit import PROJECT_DIR, RecordedResource, Secret, unwrap
from testkit.component import stack_spec

# CI lays shared/ beside the clone; a developer's checkout has it in the same place.
SHARED_DIR = PROJECT_DIR.parent / "shared"

# The attribute (and registered output) where a part's component keeps the resources its dependants wait
# on (containers, operator clusters, StatefulSets, Jobs). Tests reach it only through the two helpers below.
WAIT_ON = "wait_on"


_MEASURED: list[tuple[str, str]] = []


def report_measured(suite: str, line: str) -> None:
    """A measured result (a time, a count of lost messages) for the run's summary, under `suite`'s section
    (tests/conftest.py prints them at the end of the run)."""
    _MEASURED.append((suite, line))
    print(f"[{suite}] {line}")


def measured_lines() -> list[tuple[str, str]]:
    """(suite, line), in the order they were reported."""
    return list(_MEASURED)


def shared_file(*parts: str) -> Path:
    path = SHARED_DIR.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is not here (CI lays ../shared beside the clone); nothing to check against")
    return path


def spec_for(stack: str = "dev", **sets: Any) -> PlatformSpec:
    """Resolve a stack file plus what-if overrides (keys as for `--set`, dots as double underscores)."""
    return stack_spec(stack, set={k.replace("__", "."): v for k, v in sets.items()})


def waited_on(component: object) -> list[pulumi.Resource]:
    """What dependants of a part's component wait for (the component object, inside the program)."""
    resources: list[pulumi.Resource] = list(getattr(component, WAIT_ON))
    return resources


def waited_on_output(component: RecordedResource) -> list[Any]:
    """The same list as the recorded component registered it among its outputs."""
    registered: list[Any] = list(component.outputs[WAIT_ON])
    return registered


def env_of(container: RecordedResource, *, secret: bool = False) -> dict[str, str]:
    """A Docker container's environment (`envs`, "NAME=value" items) as a dict. secret=True: it carries
    credentials, and they travelled as Pulumi secrets (each secret variable its own secret item)."""
    envs = container.inputs.get("envs")
    if secret:
        assert isinstance(envs, list) and any(isinstance(item, Secret) for item in envs), (
            f"{container.name}: the env list carries credentials; they must travel as secrets")
    return dict(item.split("=", 1) for item in unwrap(envs) or [])


class Upload(NamedTuple):
    content: str
    executable: bool


def uploads(container: RecordedResource) -> dict[str, Upload]:
    """Every file a Docker container ships: path -> (exact content, executable)."""
    return {u["file"]: Upload(u["content"], bool(u.get("executable")))
            for u in unwrap(container.inputs).get("uploads") or []}


def promtool() -> str:
    """Debian's promtool (package prometheus); a skip without it, a failure where the servers are required."""
    found = shutil.which("promtool")
    if found:
        return found
    if os.environ.get("BANYAN_REQUIRE_SERVERS") == "1":
        pytest.fail("BANYAN_REQUIRE_SERVERS=1 but promtool is not installed (Debian package prometheus)")
    pytest.skip("promtool is not installed (Debian package prometheus)")
