"""Render one component under mocks, with what the platform would hand it: a root component, the stack's
generated secrets, and the target (the Docker network or the Kubernetes namespace) for `spec.target`.

    from components.postgres import PostgresCluster
    from testkit.component import render_component, stack_spec
    spec = stack_spec("dev", set={"tier": "medium"})
    rendering, cluster = render_component(spec, lambda s: PostgresCluster(
        "postgres", spec.postgres, passwords=s.secrets.postgres, target=s.target, opts=s.child))
    assert cluster.replica_hosts == ["postgres-replica-1", "postgres-replica-2"]
    assert len(rendering.named_like("docker:index/container:Container", "postgres-replica-")) == 2

`build` runs inside the mocked program; what it returns comes back beside the rendering (read plain
attributes from it afterwards, or collect Output values with `resolve_output` inside `build`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pulumi
import pulumi_docker as docker
import pulumi_kubernetes as k8s

from components.secrets import PlatformSecrets
from components.target import DockerTarget, KubernetesTarget, Target
from infra.program import load_spec
from model.spec import PlatformSpec
from model.thresholds import redis_monitor_user
from testkit.render import (
    PROJECT_DIR,
    PreviewMocks,
    Rendering,
    apply_sets,
    project_name,
    read_stack_file,
    render_program,
    to_engine_config,
)

T = TypeVar("T")

# One root type token and one set of names for every component rendered alone: generated secrets are
# `secrets-<purpose>` (so `mock_secret_value("secrets-redis")` is the Redis password), the network or
# namespace is `network` / `namespace`, and target-scoped resources (image pulls) start with `platform`.
ROOT_TYPE = "banyan:index:ComponentTest"
ROOT_NAME = "root"
SECRETS_NAME = "secrets"
TARGET_NAME = "platform"


def stack_spec(stack: str, *, set: Mapping[str, Any] | None = None,
               project_dir: Path = PROJECT_DIR) -> PlatformSpec:
    """The resolved spec of Pulumi.<stack>.yaml plus what-if overrides (keys as for render_stack's `set`);
    a config error raises the ConfigError `pulumi preview` would print."""
    config = apply_sets(read_stack_file(stack, project_dir), set or {})
    raw, secret_keys = to_engine_config(config)
    return load_spec(raw, project=project_name(project_dir), stack=stack, secret_keys=secret_keys)


@dataclass(frozen=True)
class Scaffold:
    """What `build` gets: the spec, the root every part hangs under, the generated secrets, the target."""

    spec: PlatformSpec
    root: pulumi.ComponentResource
    secrets: PlatformSecrets
    target: Target

    @property
    def child(self) -> pulumi.ResourceOptions:
        """Options for a resource or component under the root, as the platform parents its parts."""
        return pulumi.ResourceOptions(parent=self.root)


def _target(spec: PlatformSpec, root: pulumi.ComponentResource) -> Target:
    child = pulumi.ResourceOptions(parent=root)
    if spec.target == "docker":
        network = docker.Network("network", name=f"{spec.project}-{spec.stack}", opts=child)
        return DockerTarget(spec=spec, network=network, parent=root, name=TARGET_NAME)
    namespace = k8s.core.v1.Namespace("namespace", metadata=k8s.meta.v1.ObjectMetaArgs(name=spec.kubernetes.namespace),
                                      opts=child)
    return KubernetesTarget(spec=spec, namespace=namespace, parent=root, name=TARGET_NAME)


def render_component(spec: PlatformSpec, build: Callable[[Scaffold], T], *,
                     mocks: pulumi.runtime.Mocks | None = None, preview: bool = False) -> tuple[Rendering, T]:
    """Run `build` in a mocked program of `spec`'s project and stack, on `spec.target`; return what was
    registered and what `build` returned. `mocks` replaces the default ones (e.g. to fail a resource)."""
    built: list[T] = []

    def program() -> None:
        root = pulumi.ComponentResource(ROOT_TYPE, ROOT_NAME)
        secrets = PlatformSecrets(SECRETS_NAME, opts=pulumi.ResourceOptions(parent=root),
                                  redis_monitor=redis_monitor_user(spec))
        built.append(build(Scaffold(spec=spec, root=root, secrets=secrets, target=_target(spec, root))))

    if mocks is None and preview:
        mocks = PreviewMocks()
    rendering = render_program(program, {}, project=spec.project, stack=spec.stack, preview=preview, mocks=mocks)
    return rendering, built[0]
