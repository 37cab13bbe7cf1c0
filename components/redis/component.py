"""RedisCluster: a standalone server or a Redis Cluster, built for the stack's target (Docker:
components/redis/docker.py; Kubernetes: a StatefulSet and a creation Job, components/redis/kubernetes.py)."""

from __future__ import annotations

import pulumi

from components.redis import docker, kubernetes, swarm
from components.secrets import RedisCredentials
from components.target import KubernetesTarget, SwarmTarget, Target, require_target
from model.spec import RedisSpec

TYPE = "banyan:index:RedisCluster"


class RedisCluster(pulumi.ComponentResource):
    """Redis for the platform: a standalone server, or a Redis Cluster of masters x (1 + replicas) nodes
    created once by a one-shot step that `pulumi up` waits for."""

    hosts: list[str]
    port: int
    mode: str
    # The nodes and, in cluster mode, the creation step: depending on all of them waits for a cluster
    # that serves every slot, not just for nodes that answer PING. Docker: the containers; Kubernetes: the
    # StatefulSet and the Job.
    wait_on: list[pulumi.Resource]
    # True once the cluster is known to be formed; raises (failing `pulumi up` with the step's log)
    # when the creation step exited non-zero. Resources that take it as an input are never created
    # against a broken cluster.
    ready: pulumi.Output[bool]

    def __init__(
        self,
        name: str,
        spec: RedisSpec,
        *,
        credentials: RedisCredentials,
        target: Target,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        require_target(target, "RedisCluster")
        super().__init__(TYPE, name, None, opts)
        if isinstance(target, KubernetesTarget):
            built = kubernetes.build(self, name, spec, credentials=credentials, target=target)
        elif isinstance(target, SwarmTarget):
            built = swarm.build(self, name, spec, credentials=credentials, target=target)
        else:
            built = docker.build(self, name, spec, credentials=credentials, target=target)
        assert built.ready is not None, "both builders report when the cluster is formed"
        self.hosts, self.port, self.mode = built.hosts, built.port, spec.mode
        self.wait_on, self.ready = built.wait_on, built.ready
        self.register_outputs(
            {
                "hosts": self.hosts,
                "port": self.port,
                "mode": self.mode,
                "wait_on": self.wait_on,
                "ready": self.ready,
            }
        )
