"""Which resources hold data, for the plan's replace warnings and the policy pack's protection rule: a
Docker volume, and the Kubernetes kinds below. Standard library only (the policy pack imports it)."""

from __future__ import annotations

DOCKER_VOLUME = "docker:index/volume:Volume"
CNPG_GROUP = "postgresql.cnpg.io"
RABBITMQ_GROUP = "rabbitmq.com"

# (group, kind) of what holds data: losing one to a `pulumi destroy` or a replacement loses the data.
STATEFUL_KUBERNETES = frozenset({
    ("core", "Namespace"),
    ("core", "PersistentVolumeClaim"),
    ("apps", "StatefulSet"),
    (CNPG_GROUP, "Cluster"),
    (RABBITMQ_GROUP, "RabbitmqCluster"),
})


def kubernetes_kind(type_: str) -> tuple[str, str] | None:
    """("apps", "Deployment") for `kubernetes:apps/v1:Deployment`; None for anything not Kubernetes."""
    parts = type_.split(":")
    if len(parts) != 3 or parts[0] != "kubernetes" or "/" not in parts[1]:
        return None
    return parts[1].rsplit("/", 1)[0], parts[2]


def is_stateful_type(type_: str) -> bool:
    """Whether a resource of this Pulumi type token holds data."""
    return type_ == DOCKER_VOLUME or kubernetes_kind(type_) in STATEFUL_KUBERNETES
