"""Where a component builds: the handles each target needs, passed in by the platform."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_docker as docker
import pulumi_kubernetes as k8s

from model.preflight import PROJECT_LABEL, STACK_LABEL
from model.spec import PlatformSpec


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
        return {PROJECT_LABEL: self.spec.project, STACK_LABEL: self.spec.stack}

    def container_name(self, instance: str) -> str:
        """Container names are global on a host, and stacks share hosts: project and stack are part of it."""
        return f"{self.spec.project}-{self.spec.stack}-{instance}"

    def volume_name(self, instance: str) -> str:
        """Volumes outlive containers and stacks can share a host: the stack is part of the name."""
        return f"{self.container_name(instance)}-data"

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


@dataclass
class KubernetesTarget:
    """One namespace of a cluster that the stack owns. The provider reaches components through opts."""

    spec: PlatformSpec
    namespace: k8s.core.v1.Namespace
    parent: pulumi.Resource
    name: str

    @property
    def namespace_name(self) -> str:
        return self.spec.kubernetes.namespace

    def labels(self, part: str, component: str | None = None) -> dict[str, str]:
        """Recommended labels; `part` (app.kubernetes.io/name) is what selectors and NetworkPolicies use."""
        labels = {
            "app.kubernetes.io/name": part,
            "app.kubernetes.io/instance": self.spec.stack,
            "app.kubernetes.io/part-of": self.spec.project,
            "app.kubernetes.io/managed-by": "pulumi",
        }
        if component:
            labels["app.kubernetes.io/component"] = component
        return labels

    def selector(self, part: str) -> dict[str, str]:
        """The stable subset of labels a workload selects its pods by (selectors are immutable)."""
        return {"app.kubernetes.io/name": part, "app.kubernetes.io/instance": self.spec.stack}

    def metadata(self, name: str, part: str, component: str | None = None) -> k8s.meta.v1.ObjectMetaArgs:
        return k8s.meta.v1.ObjectMetaArgs(name=name, namespace=self.namespace_name,
                                          labels=self.labels(part, component))

    def opts(self, parent: pulumi.Resource, *, stateful: bool = False,
             depends_on: Sequence[pulumi.Resource] = ()) -> pulumi.ResourceOptions:
        """Every object waits for the namespace; stateful ones are retained and protected as the stack says."""
        return pulumi.ResourceOptions(
            parent=parent,
            depends_on=[self.namespace, *depends_on],
            retain_on_delete=True if stateful else None,
            protect=self.spec.protect if stateful else None,
        )


@dataclass
class SwarmTarget:
    """A Docker Swarm, reached through a manager: the stack's overlay network, and the Swarm configs and secrets
    shared by the services that mount them (one object per distinct content; see components/swarm_common.py)."""

    spec: PlatformSpec
    network: docker.Network
    parent: pulumi.Resource
    name: str
    configs: dict[str, docker.ServiceConfig] = field(default_factory=dict)
    secrets: dict[str, docker.Secret] = field(default_factory=dict)

    @property
    def labels(self) -> Mapping[str, str]:
        return {PROJECT_LABEL: self.spec.project, STACK_LABEL: self.spec.stack}

    def service_name(self, instance: str) -> str:
        """Service names are global in a swarm, and stacks share swarms: scoped as the Docker target's containers.
        The name parts reach one another by is the network alias, the instance (`rabbitmq-1`, `api-gateway`)."""
        return f"{self.spec.project}-{self.spec.stack}-{instance}"

    def volume_name(self, instance: str) -> str:
        return f"{self.service_name(instance)}-data"


Target = DockerTarget | KubernetesTarget | SwarmTarget


def require_target(target: object, component: str) -> None:
    """Components build for one of the two targets; anything else is a programming error, said plainly."""
    if not isinstance(target, DockerTarget | KubernetesTarget | SwarmTarget):
        raise TypeError(f"{component} builds for a SwarmTarget, a DockerTarget or a KubernetesTarget, "
                        f"not {type(target).__name__}")
