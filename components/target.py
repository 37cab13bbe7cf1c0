"""Where a component builds: the handles each target needs, passed in by the platform."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import pulumi
import pulumi_docker as docker

from infra.spec import PlatformSpec


@dataclass
class DockerTarget:
    """One Docker host: the platform network, image pulls shared by all parts, common labels."""

    spec: PlatformSpec
    network: docker.Network
    parent: pulumi.Resource
    name: str
    images: dict[str, docker.RemoteImage] = field(default_factory=dict)

    @property
    def network_name(self) -> pulumi.Output[str]:
        return self.network.name

    @property
    def labels(self) -> Mapping[str, str]:
        return {"banyan.project": self.spec.project, "banyan.stack": self.spec.stack}

    def volume_name(self, instance: str) -> str:
        """Volumes outlive containers and stacks can share a host: the stack is part of the name."""
        return f"{self.spec.project}-{self.spec.stack}-{instance}-data"

    def image(self, ref: str) -> docker.RemoteImage:
        """One pull per distinct pinned image, shared by every container that runs it."""
        if ref not in self.images:
            slug = re.sub(r"[^a-z0-9]+", "-", ref.lower()).strip("-")
            self.images[ref] = docker.RemoteImage(
                f"{self.name}-image-{slug}",
                name=ref,
                keep_locally=True,
                opts=pulumi.ResourceOptions(parent=self.parent),
            )
        return self.images[ref]
