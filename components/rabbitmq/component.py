"""RabbitMQCluster: `spec.nodes` nodes forming one cluster, built for the stack's target (Docker:
components/rabbitmq/docker.py; Kubernetes: the RabbitMQ Cluster Operator, components/rabbitmq/kubernetes.py)."""

from __future__ import annotations

import pulumi

from components.rabbitmq import docker, kubernetes, swarm
from components.secrets import RabbitMQCredentials
from components.target import KubernetesTarget, SwarmTarget, Target, require_target
from model.spec import RabbitMQSpec

TYPE = "banyan:index:RabbitMQCluster"


class RabbitMQCluster(pulumi.ComponentResource):
    """`spec.nodes` RabbitMQ nodes that form one cluster. Docker: the nodes cluster by themselves and the
    management UI is optionally published on the host's loopback (node 1 only). Kubernetes: a RabbitmqCluster of
    the RabbitMQ Cluster Operator; `hosts` is its client Service and `wait_on` the RabbitmqCluster."""

    hosts: list[str]
    port: int
    management_port: int
    management_url: str | None
    wait_on: list[pulumi.Resource]

    def __init__(
        self,
        name: str,
        spec: RabbitMQSpec,
        *,
        credentials: RabbitMQCredentials,
        target: Target,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        require_target(target, "RabbitMQCluster")
        super().__init__(TYPE, name, None, opts)
        if isinstance(target, KubernetesTarget):
            built = kubernetes.build(self, name, spec, credentials=credentials, target=target)
        elif isinstance(target, SwarmTarget):
            built = swarm.build(self, name, spec, credentials=credentials, target=target)
        else:
            built = docker.build(self, name, spec, credentials=credentials, target=target)
        self.hosts = built.hosts
        self.port = built.port
        self.management_port = spec.management_port
        self.management_url = built.url if isinstance(built.url, str) else None
        self.wait_on = built.wait_on
        self.register_outputs({
            "hosts": self.hosts,
            "port": self.port,
            "management_port": self.management_port,
            "management_url": self.management_url,
            "wait_on": self.wait_on,
        })
