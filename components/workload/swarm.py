"""The gateway and the business services on Docker Swarm: one replicated service each, `instances` tasks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pulumi

from components import docker_common as dc
from components import swarm_common as sc
from components.nginx.config import DRAIN_DELAY_S
from components.seam import Built
from components.target import SwarmTarget
from model.spec import GatewaySpec, WorkloadSpec

# What a stopping instance gets after its drain delay to finish in-flight requests (the Kubernetes target's).
SHUTDOWN_S = 30


def build(parent: pulumi.Resource, name: str, spec: WorkloadSpec, *, env: Mapping[str, pulumi.Input[str]],
          target: SwarmTarget, depends_on: Sequence[pulumi.Resource]) -> Built:
    """The tier's instance count as replicas, rolled two at a time, start-first (a new task is healthy before an
    old one stops). On the overlay network the part's name is a virtual IP over its tasks, and `tasks.<name>`
    resolves to every task: Nginx balances over the latter, as over the gateway containers on Docker."""
    service = sc.service(
        f"{name}-service",
        target=target,
        instance=spec.name,
        part=spec.name,
        image=spec.image,
        command=spec.command,
        resources=spec.resources,
        env=env,
        health=dc.Health.http(spec.port, spec.health_path),
        rollout=sc.Rollout.stateless(),
        replicas=spec.instances,
        # The wrapper that turns secret files into variables runs the command; an image run with its own
        # entrypoint (no command set) gets its credentials in the env instead.
        secrets_as_files=spec.command is not None,
        # A stopping task serves on until Nginx has re-resolved the gateway's tasks (see render_secrets_env).
        drain_s=DRAIN_DELAY_S,
        stop_timeout_s=DRAIN_DELAY_S + SHUTDOWN_S,
        depends_on=depends_on,
        parent=parent,
    )
    hosts = [f"tasks.{spec.name}"] if isinstance(spec, GatewaySpec) else [spec.name]
    return Built(hosts=hosts, port=spec.port, wait_on=[service])
