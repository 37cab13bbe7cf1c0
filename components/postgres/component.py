"""PostgresCluster: one primary and N streaming read replicas, built for the stack's target (Docker:
components/postgres/docker.py; Kubernetes: CloudNativePG, components/postgres/kubernetes.py)."""

from __future__ import annotations

import pulumi

from components.postgres import docker, kubernetes, swarm
from components.secrets import PostgresPasswords
from components.target import KubernetesTarget, SwarmTarget, Target, require_target
from model.spec import PostgresSpec

TYPE = "banyan:index:PostgresCluster"


class PostgresCluster(pulumi.ComponentResource):
    """One primary and `spec.replicas` hot standbys streaming from it, each through its own slot.

    Applications write to `primary_host` and may read from `replica_hosts`, as `user` on `database`.
    `wait_on` is what dependants wait for: the containers (Docker), the Cluster and Pooler (Kubernetes).
    """

    primary_host: str
    replica_hosts: list[str]
    port: int
    database: str
    user: str
    wait_on: list[pulumi.Resource]

    def __init__(
        self,
        name: str,
        spec: PostgresSpec,
        *,
        passwords: PostgresPasswords,
        target: Target,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        require_target(target, "PostgresCluster")
        super().__init__(TYPE, name, None, opts)
        if isinstance(target, KubernetesTarget):
            built = kubernetes.build(self, name, spec, passwords=passwords, target=target)
        elif isinstance(target, SwarmTarget):
            built = swarm.build(self, name, spec, passwords=passwords, target=target)
        else:
            built = docker.build(self, name, spec, passwords=passwords, target=target)
        self.primary_host, *self.replica_hosts = built.hosts
        self.port = built.port
        self.database = spec.database
        self.user = spec.user
        self.wait_on = built.wait_on
        self.register_outputs(
            {
                "primary_host": self.primary_host,
                "replica_hosts": self.replica_hosts,
                "port": self.port,
                "database": self.database,
                "user": self.user,
                "wait_on": self.wait_on,
            }
        )
