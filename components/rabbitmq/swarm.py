"""RabbitMQ on Docker Swarm: each node a single-replica service (its own volume, its own host name), clustered
by the same classic-config peer discovery and entrypoint as on Docker (components/rabbitmq/config.py), plus a
readiness gate whose health is the whole cluster's."""

from __future__ import annotations

import pulumi

from components import docker_common as dc
from components import swarm_common as sc
from components.rabbitmq.config import APP_PASSWORD_ENV, APP_USER_ENV, COOKIE_ENV, DATA_DIR, ENTRYPOINT_PATH, node_name
from components.rabbitmq.docker import HEALTH, NODE_COMMAND, STOP_TIMEOUT_S, WAIT_TIMEOUT_S, node_env, node_uploads
from components.seam import Built
from components.secrets import RabbitMQCredentials
from components.target import SwarmTarget
from model.spec import RabbitMQSpec, Resources, ResourceSpec

# A Swarm task's name resolves only once its health check has passed (the engine activates a task's service
# binding, DNS included, at its first healthy report), so nodes booting together cannot see each other and each
# starts alone. On Swarm the nodes are therefore created one after another, each once its predecessor is healthy
# (the Docker target's check: running and the applications' user authenticated), and a fresh node finds the
# cluster it joins. Restarts are Swarm's and need no order: the node that stopped last starts without waiting,
# turns healthy and resolvable, and the others' wait for it ends.
GATE_RESOURCES = ResourceSpec(limits=Resources(cpu_millis=500, memory_mib=256),
                              requests=Resources(cpu_millis=10, memory_mib=32))


def gate_check(spec: RabbitMQSpec) -> str:
    """Every node running in one cluster, as node 1 sees it, and the applications' user authenticated: what the
    Docker target's per-node check proves, once for the cluster."""
    first = node_name(spec.instance_names[0])
    wanted = " ".join(node_name(i) for i in spec.instance_names)
    # Blanks dropped: the membership is read from the JSON however it is spaced.
    cookie = f'--erlang-cookie "${COOKIE_ENV}"'
    return (f"out=$(rabbitmq-diagnostics -q -n {first} {cookie} cluster_status --formatter json | tr -d ' \\n\\t') && "
            """running=${out#*'"running_nodes":['} && running=${running%%']'*} && """
            f"for n in {wanted}; do case \"$running\" in *'\"'\"$n\"'\"'*) ;; *) exit 1;; esac; done && "
            f'printf %s "${APP_PASSWORD_ENV}" | rabbitmqctl -q -n {first} {cookie} authenticate_user '
            f'"${APP_USER_ENV}" >/dev/null')


def build(parent: pulumi.Resource, name: str, spec: RabbitMQSpec, *, credentials: RabbitMQCredentials,
          target: SwarmTarget) -> Built:
    """Nodes are created in order (see above), on the Docker target's files and check. `dnsrr`: a node's name
    resolves to its task's own address, which Erlang distribution needs. The management port is not published:
    the routing mesh would publish it on every interface of every node."""
    uploads = node_uploads(spec)
    nodes: list[pulumi.Resource] = []
    for i, instance in enumerate(spec.instance_names, start=1):
        mounts = [sc.VolumeMount(target.volume_name(instance), DATA_DIR)] if spec.persistence else []
        nodes.append(
            sc.service(
                f"{name}-{i}",
                target=target,
                instance=instance,
                hostname=instance,
                part=spec.name,
                image=spec.image,
                resources=spec.resources,
                health=HEALTH,
                parent=parent,
                rollout=sc.Rollout.stateful(),
                env=node_env(instance, credentials),
                entrypoint=[ENTRYPOINT_PATH],
                command=NODE_COMMAND,
                uploads=uploads,
                mounts=mounts,
                # Without a volume a node may run anywhere; with one, it stays with it.
                constraints=sc.placement(target, instance) if spec.persistence else (),
                dnsrr=True,
                stop_timeout_s=STOP_TIMEOUT_S,
                converge_timeout_s=WAIT_TIMEOUT_S,
                depends_on=nodes[-1:],
            )
        )
    gate = _gate(name, spec, credentials, target, nodes, parent)
    return Built(hosts=list(spec.instance_names), port=spec.port, wait_on=[*nodes, gate])


def _gate(name: str, spec: RabbitMQSpec, credentials: RabbitMQCredentials, target: SwarmTarget,
          nodes: list[pulumi.Resource], parent: pulumi.Resource) -> pulumi.Resource:
    """A task that only checks the cluster (its CLI handed the cookie on the command line: as root, the CLI does not
    take it from $HOME): its convergence (healthy) is the
    cluster's formation, so dependants (the gateway and services) start once it has formed, and later its
    health shows a cluster that lost a node."""
    idle = "exec tail -f /dev/null"
    return sc.service(
        f"{name}-ready",
        target=target,
        instance=f"{spec.name}-ready",
        part=spec.name,
        image=spec.image,
        resources=GATE_RESOURCES,
        health=dc.Health(("CMD-SHELL", gate_check(spec)), interval_s=10, timeout_s=30, retries=3,
                         start_period_s=WAIT_TIMEOUT_S),
        parent=parent,
        rollout=sc.Rollout.stateful(),
        env={COOKIE_ENV: credentials.erlang_cookie, APP_USER_ENV: credentials.app_user,
             APP_PASSWORD_ENV: credentials.app_password},
        entrypoint=["/bin/sh", "-c", idle],
        depends_on=nodes,
        dnsrr=True,
        converge_timeout_s=WAIT_TIMEOUT_S + 60,
    )


