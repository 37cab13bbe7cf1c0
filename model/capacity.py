"""Capacity arithmetic from the Scalability Guide: instances from load, the connection budget, cluster shapes."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

from model.spec import BudgetLine, ConnectionBudget

# "Database Connections < 80% max" (guide, Target Metrics).
BUDGET_LIMIT_PERCENT = 80
# PostgreSQL's own default; deriving less saves nothing worth the surprise.
MIN_DERIVED_MAX_CONNECTIONS = 100
REDIS_CLUSTER_MIN_MASTERS = 3


def instances_for_load(peak_rps: int, capacity_rps: int, headroom: float) -> int:
    """Guide, Example Calculation: 5000 req/s / 1000 per instance = 5, x 2 headroom = 10."""
    if peak_rps <= 0 or capacity_rps <= 0 or headroom < 1:
        raise ValueError("peak and capacity must be positive and headroom at least 1")
    base = math.ceil(Fraction(peak_rps, capacity_rps))
    return max(1, math.ceil(base * Fraction(str(headroom))))


def required_max_connections(total: int, limit_percent: int = BUDGET_LIMIT_PERCENT) -> int:
    """Smallest max_connections that keeps `total` strictly under limit_percent of it."""
    return total * 100 // limit_percent + 1


def derive_max_connections(total: int, limit_percent: int = BUDGET_LIMIT_PERCENT) -> int:
    """The max_connections the stack sets when the config leaves it open: required, rounded up to tens."""
    needed = required_max_connections(total, limit_percent)
    return max(MIN_DERIVED_MAX_CONNECTIONS, math.ceil(needed / 10) * 10)


def connection_budget(
    lines: Sequence[BudgetLine], max_connections: int | None, limit_percent: int = BUDGET_LIMIT_PERCENT
) -> tuple[ConnectionBudget, bool]:
    """The budget against a given max_connections, or a derived one; the flag says which."""
    total = sum(line.connections for line in lines)
    derived = max_connections is None
    chosen = derive_max_connections(total, limit_percent) if max_connections is None else max_connections
    return ConnectionBudget(lines=tuple(lines), max_connections=chosen, limit_percent=limit_percent), derived


def budget_shortfall(budget: ConnectionBudget) -> str | None:
    """None when the budget fits; otherwise the arithmetic and the way out."""
    if budget.fits:
        return None
    return (
        f"too low for the connection budget: {budget.arithmetic()}, and {budget.total} is not under "
        f"{budget.usable:g}; allowed: at least {required_max_connections(budget.total, budget.limit_percent)} "
        "(or leave it unset to derive it), or fewer instances or a smaller pool max"
    )


def rabbitmq_shape_error(nodes: int, quorum: bool, allow_even: bool) -> str | None:
    """Quorum queues need a majority: an even cluster tolerates no more failures than the odd one below it."""
    if quorum and nodes % 2 == 0 and not allow_even:
        return (
            f"an even node count ({nodes}) buys no extra fault tolerance for quorum queues "
            f"(a majority of {nodes} is {nodes // 2 + 1}); allowed: an odd count (1, 3, 5, 7, ...), "
            "or set banyan:rabbitmq.allow_even_nodes: true"
        )
    return None


@dataclass(frozen=True)
class RedisShape:
    mode: Literal["standalone", "cluster"]
    masters: int
    replicas_per_master: int


def redis_shape(nodes: int, replicas_per_master: int) -> RedisShape | str:
    """One node is a standalone server; more form a cluster of masters x (1 + replicas) nodes."""
    if nodes == 1:
        if replicas_per_master:
            return (
                f"a single node has no replicas (replicas_per_master {replicas_per_master}); "
                "allowed: replicas_per_master 0, or nodes = masters x (1 + replicas) with at least 3 masters"
            )
        return RedisShape("standalone", 1, 0)
    group = 1 + replicas_per_master
    if nodes % group:
        return (
            f"{nodes} nodes cannot be split into masters of 1 + {replicas_per_master} replicas "
            f"({nodes} / {group} is not whole); allowed: 1 (standalone) or masters x {group} "
            f"with at least {REDIS_CLUSTER_MIN_MASTERS} masters ({REDIS_CLUSTER_MIN_MASTERS * group}, "
            f"{(REDIS_CLUSTER_MIN_MASTERS + 1) * group}, ...)"
        )
    masters = nodes // group
    if masters < REDIS_CLUSTER_MIN_MASTERS:
        return (
            f"{nodes} nodes with {replicas_per_master} replicas per master give {masters} masters; "
            f"Redis Cluster needs at least {REDIS_CLUSTER_MIN_MASTERS}; allowed: 1 (standalone) or "
            f"{REDIS_CLUSTER_MIN_MASTERS * group}, {(REDIS_CLUSTER_MIN_MASTERS + 1) * group}, ... nodes"
        )
    return RedisShape("cluster", masters, replicas_per_master)
