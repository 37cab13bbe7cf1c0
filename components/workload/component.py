"""ApiGateway and Service: the stateless parts, N identical instances, built for the stack's target (Docker:
components/workload/docker.py; Kubernetes: components/workload/kubernetes.py)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pulumi

from components.target import DockerTarget, SwarmTarget, Target
from components.workload import docker, kubernetes, swarm
from model.spec import GatewaySpec, ServiceSpec, WorkloadSpec


class _Workload(pulumi.ComponentResource):
    hosts: list[str]
    port: int
    wait_on: list[pulumi.Resource]

    def __init__(self, type_: str, name: str, spec: WorkloadSpec, *, env: Mapping[str, pulumi.Input[str]],
                 target: Target, depends_on: Sequence[pulumi.Resource] = (),
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(type_, name, None, opts)
        if isinstance(target, DockerTarget):
            built = docker.build(self, name, spec, env=env, target=target, depends_on=depends_on)
        elif isinstance(target, SwarmTarget):
            built = swarm.build(self, name, spec, env=env, target=target, depends_on=depends_on)
        else:
            built = kubernetes.build(self, name, spec, env=env, target=target, depends_on=depends_on)
        self.hosts, self.port, self.wait_on = built.hosts, built.port, built.wait_on
        self.register_outputs({"hosts": self.hosts, "port": self.port})


class ApiGateway(_Workload):
    """The gateway instances Nginx balances over (`api-gateway-1` ... as in the guide's upstream)."""

    def __init__(self, name: str, spec: GatewaySpec, *, env: Mapping[str, pulumi.Input[str]],
                 target: Target, depends_on: Sequence[pulumi.Resource] = (),
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("banyan:index:ApiGateway", name, spec, env=env, target=target,
                         depends_on=depends_on, opts=opts)


class Service(_Workload):
    """One business service: competing consumers of its queues, scaled by instance count."""

    def __init__(self, name: str, spec: ServiceSpec, *, env: Mapping[str, pulumi.Input[str]],
                 target: Target, depends_on: Sequence[pulumi.Resource] = (),
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("banyan:index:Service", name, spec, env=env, target=target,
                         depends_on=depends_on, opts=opts)
