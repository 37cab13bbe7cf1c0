"""The Nginx load balancer on Docker Swarm: one service, published through the routing mesh."""

from __future__ import annotations

from collections.abc import Sequence

import pulumi

from components import docker_common
from components import swarm_common as sc
from components.nginx.config import HEALTH_PATH, RESOLVE_SINCE, SHUTDOWN_TIMEOUT_S, render_nginx_conf, supports_resolve
from components.nginx.docker import CONF_PATH, DOCKER_DNS
from components.seam import Built
from components.target import SwarmTarget
from model.spec import NginxSpec


def build(parent: pulumi.Resource, name: str, spec: NginxSpec, *, upstreams: Sequence[str], upstream_port: int,
          peers: int, depends_on: Sequence[pulumi.Resource], target: SwarmTarget) -> Built:
    """Published in `ingress` mode (the routing mesh), not `host` mode: the port answers on every node of the
    swarm wherever the Nginx tasks run, a start-first update can run the new task beside the old one (in host
    mode both would bind the same port of one node), and more than one replica is possible. The price: the mesh
    binds every interface of every node (no loopback-only publishing as on Docker) and Nginx sees the mesh's
    address, not the client's; and the mesh needs IPVS in every node's kernel. `banyan:swarm.publish_mode: host`
    is the other choice: the port only on nodes that run Nginx, one task per node, rolled stop-first.
    `upstreams` is `tasks.api-gateway`, re-resolved by Nginx as tasks come and go."""
    host = target.spec.swarm.publish_mode == "host"
    if not supports_resolve(spec):
        pulumi.log.warn(
            f"banyan:nginx.image {spec.image} is older than nginx {'.'.join(map(str, RESOLVE_SINCE))}, which resolves "
            "upstream names only at start: on Swarm every gateway update replaces the tasks behind "
            f"{', '.join(upstreams)}, and Nginx keeps sending requests to the old ones until it restarts. Use a newer "
            "image (the default pin is one)")
    conf = render_nginx_conf(spec, upstreams, upstream_port, resolver=DOCKER_DNS, peers=peers)
    instance = spec.name
    service = sc.service(
        f"{name}-service",
        target=target,
        instance=instance,
        part="nginx",
        image=spec.image,
        resources=spec.resources,
        health=docker_common.Health.http(spec.listen_port, HEALTH_PATH),
        # Host mode: a node's port is bound once, so the old task must stop before the new one can start there.
        rollout=sc.Rollout("stop-first", 1) if host else sc.Rollout.stateless(),
        replicas=spec.instances,
        uploads=[docker_common.Upload(CONF_PATH, conf)],
        published=[sc.Port(spec.listen_port, spec.public_port, "host" if host else "ingress")],
        max_per_node=1 if host else None,
        depends_on=list(depends_on),
        stop_timeout_s=SHUTDOWN_TIMEOUT_S + 5,
        parent=parent,
    )
    return Built(hosts=[instance], port=spec.public_port, wait_on=[service],
                 url=f"http://localhost:{spec.public_port}")
