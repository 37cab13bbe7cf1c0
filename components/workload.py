"""The stateless parts: the API gateway and each business service, N identical instances."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pulumi
import pulumi_docker as docker

from components import docker_common as dc
from components.target import DockerTarget
from infra.spec import GatewaySpec, ServiceSpec, WorkloadSpec


class _Workload(pulumi.ComponentResource):
    hosts: list[str]
    port: int
    containers: list[docker.Container]

    def __init__(self, type_: str, name: str, spec: WorkloadSpec, *, env: Mapping[str, pulumi.Input[str]],
                 target: DockerTarget, depends_on: Sequence[pulumi.Resource] = (),
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(type_, name, None, opts)
        if not isinstance(target, DockerTarget):
            raise NotImplementedError("only the Docker target is built so far")
        self.port = spec.port
        self.hosts = list(spec.instance_names)
        self.containers = [
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
                parent=self,
            )
            for i, instance in enumerate(spec.instance_names, start=1)
        ]
        self.register_outputs({"hosts": self.hosts, "port": self.port})


class ApiGateway(_Workload):
    """The gateway instances Nginx balances over (`api-gateway-1` ... as in the guide's upstream)."""

    def __init__(self, name: str, spec: GatewaySpec, *, env: Mapping[str, pulumi.Input[str]],
                 target: DockerTarget, depends_on: Sequence[pulumi.Resource] = (),
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("banyan:index:ApiGateway", name, spec, env=env, target=target,
                         depends_on=depends_on, opts=opts)


class Service(_Workload):
    """One business service: competing consumers of its queues, scaled by instance count."""

    def __init__(self, name: str, spec: ServiceSpec, *, env: Mapping[str, pulumi.Input[str]],
                 target: DockerTarget, depends_on: Sequence[pulumi.Resource] = (),
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("banyan:index:Service", name, spec, env=env, target=target,
                         depends_on=depends_on, opts=opts)
