"""The one shape every part's target builder returns (`docker.build`, `kubernetes.build`), so that a
part's component class, and the platform that wires parts together, never depend on the target."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi


@dataclass(frozen=True)
class Built:
    """What a part is once built for a target.

    `hosts` are the names dependants connect to (for PostgreSQL the first is the primary, where writes
    go, and the rest serve reads); `wait_on` are the resources dependants wait for before they start
    (containers with health waits, operator clusters awaited by condition, Deployments, creation jobs);
    `ready` is a readiness known only once deployed (Redis: the cluster was created), when there is one;
    `url` is where a person reaches the part (Nginx's public URL, RabbitMQ's management UI), if anywhere.
    """

    hosts: list[str]
    port: int
    wait_on: list[pulumi.Resource]
    ready: pulumi.Output[bool] | None = None
    url: pulumi.Input[str] | None = None
