"""Redis on Docker Swarm: each node a single-replica service on its own volume, plus the cluster creator."""

from __future__ import annotations

import shlex

import pulumi
import pulumi_docker as docker

from components import docker_common
from components import swarm_common as sc
from components.redis.config import (
    CLI_AUTH_ENV,
    CREATE_PATH,
    DATA_DIR,
    health_test,
    render_cluster_create_script,
)
from components.redis.docker import (
    CREATE_MEMORY_MIB,
    NODE_ENTRYPOINT,
    STOP_TIMEOUT_S,
    node_env,
    node_uploads,
)
from components.seam import Built
from components.secrets import RedisCredentials
from components.target import SwarmTarget
from model.spec import RedisSpec, Resources, ResourceSpec

PART = "redis"
# The creator's script bounds itself (readiness 120 s + settling 60 s + the create).
CREATE_TIMEOUT_S = 600
CREATE_RESOURCES = ResourceSpec(limits=Resources(cpu_millis=500, memory_mib=CREATE_MEMORY_MIB),
                                requests=Resources(cpu_millis=10, memory_mib=16))


def build(parent: pulumi.Resource, name: str, spec: RedisSpec, *, credentials: RedisCredentials,
          target: SwarmTarget) -> Built:
    env = node_env(credentials)
    nodes: list[pulumi.Resource] = []
    for i, instance in enumerate(spec.instance_names, 1):
        nodes.append(
            sc.service(
                f"{name}-node-{i}",
                target=target,
                instance=instance,
                hostname=instance,
                part=PART,
                image=spec.image,
                resources=spec.resources,
                health=docker_common.Health(health_test(spec)),
                parent=parent,
                rollout=sc.Rollout.stateful(),
                env=env,
                entrypoint=NODE_ENTRYPOINT,
                uploads=node_uploads(spec, instance, monitor=credentials.monitor_password is not None),
                mounts=[sc.VolumeMount(target.volume_name(instance), DATA_DIR)],
                constraints=sc.placement(target, instance),
                # Cluster nodes announce their names, and every node must reach every other's own address.
                dnsrr=True,
                stop_timeout_s=STOP_TIMEOUT_S,
            )
        )
    hosts = list(spec.instance_names)
    if spec.mode != "cluster":
        return Built(hosts=hosts, port=spec.port, wait_on=nodes, ready=pulumi.Output.from_input(True))
    create = _creator(name, spec, credentials, target, nodes, parent)
    return Built(hosts=hosts, port=spec.port, wait_on=[*nodes, create], ready=create.id.apply(lambda _: True))


def _creator(name: str, spec: RedisSpec, credentials: RedisCredentials, target: SwarmTarget,
             nodes: list[pulumi.Resource], parent: pulumi.Resource) -> docker.Service:
    """A service has no run-once mode in the provider (no replicated-job), and convergence means every task
    running: the creator runs the creation script (the Docker target's, idempotent) and then stays, its health
    check the cluster's own state. So its convergence is the cluster's creation (`pulumi up` returns once every
    slot is served), a failed script is a failed task whose output the provider reports, and the task is what
    a cluster left unhealthy later shows as unhealthy. Restarted, it finds the cluster formed and changes nothing."""
    first = spec.instance_names[0]
    health = docker_common.Health(
        ("CMD-SHELL", f"redis-cli -h {first} -p {spec.port} cluster info | grep -q '^cluster_state:ok'"),
        interval_s=10, start_period_s=CREATE_TIMEOUT_S)
    run = f"/bin/sh {shlex.quote(CREATE_PATH)} && exec tail -f /dev/null"
    return sc.service(
        f"{name}-create",
        target=target,
        instance=spec.cluster_create_name,
        part=PART,
        image=spec.image,
        resources=CREATE_RESOURCES,
        health=health,
        parent=parent,
        rollout=sc.Rollout.stateful(),
        env={CLI_AUTH_ENV: credentials.password},
        entrypoint=["/bin/sh", "-c", run],
        uploads=[docker_common.Upload(CREATE_PATH, render_cluster_create_script(spec), executable=True)],
        depends_on=nodes,
        # Nothing connects to it: no virtual IP.
        dnsrr=True,
        converge_timeout_s=CREATE_TIMEOUT_S,
    )
