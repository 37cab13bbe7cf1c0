"""The cAdvisor the stack pins and the one the e2e suite builds (scripts/build-cadvisor over scripts/cadvisor) are
the same release, resolved from the committed go.sum, and the build runs in CI right after the images."""

from __future__ import annotations

import re
import subprocess

from components.monitoring.docker import cadvisor_command
from components.monitoring.images import CADVISOR
from testkit import PROJECT_DIR
from tests.e2e.docker.driver import OFFICIAL_TO_PART
from tests.helpers import spec_for

SRC = PROJECT_DIR / "scripts" / "cadvisor"


def _required(module: str) -> str:
    found = re.findall(rf"^\s*(?:require\s+)?{re.escape(module)} (v\S+)", (SRC / "go.mod").read_text(), re.M)
    assert len(found) == 1, f"{module} required {len(found)} times in go.mod"
    return str(found[0])


def test_the_build_is_the_pinned_release_from_the_committed_go_sum() -> None:
    version = _required("github.com/google/cadvisor")
    assert CADVISOR.tag == version
    # The library module is released with the same tag (the root module's own go.mod points it at ./lib).
    assert _required("github.com/google/cadvisor/lib") == version
    sums = (SRC / "go.sum").read_text()
    for module in ("github.com/google/cadvisor", "github.com/google/cadvisor/lib"):
        assert f"{module} {version} h1:" in sums, module
    assert "-mod=readonly" in (PROJECT_DIR / "scripts" / "build-cadvisor").read_text()


def test_the_e2e_suite_stands_the_local_build_in_for_the_official_image() -> None:
    assert CADVISOR.repository == "ghcr.io/google/cadvisor"
    assert OFFICIAL_TO_PART[CADVISOR.repository.rsplit("/", 1)[-1]] == "cadvisor"


def test_the_script_parses_and_ci_runs_it_after_the_images() -> None:
    script = PROJECT_DIR / "scripts" / "build-cadvisor"
    subprocess.run(["bash", "-n", str(script)], check=True)
    lines = [line.strip() for line in (PROJECT_DIR / ".ci" / "run").read_text().splitlines()]
    images, cadvisor = lines.index("./scripts/build-images"), lines.index("./scripts/build-cadvisor")
    # Right after the images it builds on: only comments between them, and before the tests.
    assert images < cadvisor < lines.index("./scripts/test")
    assert all(not line or line.startswith("#") for line in lines[images + 1:cadvisor])


def test_our_build_declares_every_flag_the_stack_passes_that_the_library_does_not() -> None:
    """The library registers -docker_only and -housekeeping_interval; the rest are the official command's flags,
    which main.go declares under the same names."""
    declared = set(re.findall(r'flag\.(?:String|Int|Bool|Duration|Var)\([^"]*"(\w+)"', (SRC / "main.go").read_text()))
    passed = {a.lstrip("-").split("=", 1)[0] for a in cadvisor_command(spec_for("dev", **{"monitoring.enabled": True}))}
    assert passed - {"docker_only", "housekeeping_interval"} <= declared
