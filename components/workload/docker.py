"""The gateway and the business services on Docker: N identical containers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pulumi

from components import docker_common as dc
from components.seam import Built
from components.target import DockerTarget
from model.spec import WorkloadSpec


def build(parent: pulumi.Resource, name: str, spec: WorkloadSpec, *, env: Mapping[str, pulumi.Input[str]],
          target: DockerTarget, depends_on: Sequence[pulumi.Resource]) -> Built:
    """One container per instance; each instance's name is its host name on the platform network."""
    containers: list[pulumi.Resource] = [
        dc.container(
            f"{name}-{i}",
            target=target,
            instance=instance,
            part=spec.name,
            image=spec.image,
            command=spec.command,
            resources=spec.resources,
            env=env,
            health=dc.Health.http(spec.port, spec.health_path),
            depends_on=depends_on,
            parent=parent,
        )
        for i, instance in enumerate(spec.instance_names, start=1)
    ]
    return Built(hosts=list(spec.instance_names), port=spec.port, wait_on=containers)
