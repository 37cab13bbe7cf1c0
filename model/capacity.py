"""Capacity arithmetic from the Scalability Guide: instances from load, the connection budget, cluster shapes."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

from model.spec import BudgetLine, ConnectionBudget, ServiceSpec

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


def load_arithmetic(peak_rps: int, capacity_rps: int, headroom: float) -> str:
    """instances_for_load, written out: `5000 req/s / 1000 req/s per instance = 5, x 2 headroom = 10 instances`."""
    base = math.ceil(Fraction(peak_rps, capacity_rps))
    return (f"{peak_rps} req/s / {capacity_rps} req/s per instance = {base}, x {headroom:g} headroom = "
            f"{instances_for_load(peak_rps, capacity_rps, headroom)} instances")


def max_peak_for(instances: int, capacity_rps: int, headroom: float) -> int:
    """The largest peak that instances_for_load serves with at most `instances`: ceil(peak / capacity) may be
    at most instances / headroom, rounded down."""
    return math.floor(Fraction(instances) / Fraction(str(headroom))) * capacity_rps


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


def budget_shortfall(budget: ConnectionBudget, most: int | None = None) -> str | None:
    """None when the budget fits; otherwise the arithmetic and the way out (never past `most`, the highest
    max_connections the config allows)."""
    if budget.fits:
        return None
    needed = required_max_connections(budget.total, budget.limit_percent)
    head = (f"too low for the connection budget: {budget.arithmetic()}, and {budget.total} is not under "
            f"{budget.usable_text}; allowed: ")
    if most is not None and needed > most:
        return head + _beyond(budget, most)
    return head + f"at least {needed} (or leave it unset to derive it), or fewer instances or a smaller pool max"


def derived_beyond_limit(budget: ConnectionBudget, most: int) -> str:
    """The derived max_connections exceeds what the key allows: the arithmetic, and what would fit."""
    terms = budget.arithmetic().split(";", 1)[0]
    return (f"derived from the connection budget (the key is unset): {terms}, which needs max_connections "
            f"{budget.max_connections} to stay under {budget.limit_percent}%, above the limit of the key; allowed: "
            + _beyond(budget, most))


def _beyond(budget: ConnectionBudget, most: int) -> str:
    fits = math.ceil(most * budget.limit_percent / 100) - 1
    return (f"max_connections is at most {most} (its {budget.limit_percent}% is {most * budget.limit_percent // 100}), "
            f"so the budget must stay at or under {fits} connections: fewer instances (on Kubernetes the autoscaler's "
            "max_replicas) or a smaller pool max")


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


# ---- queue depth (the guide's Target Metrics: "Queue Depth < 100 -> Scale service handlers") ------------------

QUEUE_DEPTH_TARGET = 100
# The HorizontalPodAutoscaler leaves the count alone while usage / (replicas x target) is within this of 1
# (kube-controller-manager --horizontal-pod-autoscaler-tolerance, default 0.1; replica_calculator.go). KEDA
# scales through an HPA of its own, so the same rule decides.
HPA_TOLERANCE = Fraction(1, 10)
# KEDA hands the HPA its target as a milli-quantity: a thousandth is the finest step that survives.
_TARGET_STEP = Fraction(1, 1000)


def queue_target_per_instance(prefetch: int, max_replicas: int, queue_depth: int = QUEUE_DEPTH_TARGET) -> Fraction:
    """The messages (ready + unacknowledged) per instance KEDA's HPA aims at for a service.

    While messages wait (ready > 0) every consumer holds its full prefetch unacknowledged (RabbitMQ delivers to
    any free slot first), so with N instances the metric is N x prefetch + ready; the HPA moves to
    ceil(metric / target) once metric / (N x target) leaves 1 +- HPA_TOLERANCE. Two things must hold at every N:
    - busy instances are kept: with nothing waiting (N x prefetch) / (N x target) >= 1 while target <= prefetch,
      so no scale-down removes an instance that holds its prefetch;
    - a backlog of `queue_depth` scales up below the maximum: N x prefetch + queue_depth > (1 + tolerance) x N x
      target, hardest at N = max_replicas - 1, so target < (prefetch + queue_depth / (max - 1)) / (1 + tolerance).
    The target is the prefetch, or the last thousandth below that bound where the tolerance would hide the backlog
    (large prefetch x many instances)."""
    if prefetch < 1 or max_replicas < 1 or queue_depth < 1:
        raise ValueError("prefetch, max_replicas and queue_depth must be at least 1")
    if max_replicas == 1:
        return Fraction(prefetch)
    bound = (prefetch + Fraction(queue_depth, max_replicas - 1)) / (1 + HPA_TOLERANCE)
    below = (math.ceil(bound / _TARGET_STEP) - 1) * _TARGET_STEP
    return min(Fraction(prefetch), below)


def decimal_text(value: Fraction) -> str:
    """A target as KEDA's `value` takes it: `10`, `9.327` (at most three places, exact)."""
    milli = value / _TARGET_STEP
    if milli.denominator != 1:
        raise ValueError(f"{value} is not a whole number of thousandths")
    whole, rest = divmod(int(milli), 1000)
    return str(whole) if not rest else f"{whole}.{rest:03d}".rstrip("0")


def hpa_desired(metric: Fraction | int, replicas: int, target: Fraction, low: int, high: int,
                tolerance: Fraction = HPA_TOLERANCE) -> int:
    """What the HPA makes of an AverageValue metric, bounded by min and max: the replica calculator's rule as it
    computes it (milli-values, a float64 ratio, a change only when |1 - ratio| > tolerance, then
    ceil(usage / target)); in floats a ratio of exactly 1.1 is just past 0.1 and scales."""
    usage, per_pod = int(Fraction(metric) * 1000), int(target * 1000)
    ratio = float(usage) / (float(per_pod) * float(replicas))
    wanted = replicas if abs(1.0 - ratio) <= float(tolerance) else -(-usage // per_pod)
    return max(low, min(high, wanted))


@dataclass(frozen=True)
class QueueAdvice:
    """Which service to scale, to how many instances, and why, for one observed queue depth."""

    service: str
    instances: int
    wanted: int
    text: str


def queue_advice(service: str, *, ready: int, instances: int, prefetch: int, max_replicas: int,
                 queue_depth: int = QUEUE_DEPTH_TARGET, unacknowledged: int | None = None,
                 min_replicas: int = 1, cap: int | None = None) -> QueueAdvice:
    """The arithmetic a cluster's KEDA acts on, as advice where no autoscaler runs (Docker) and for the
    queue-depth alert: with `ready` messages waiting and the instances busy (each holding its prefetch, unless
    `unacknowledged` says how many are in flight), ceil((in flight + ready) / target) instances. The count is
    capped at `max_replicas`, the most the connection budget plans for (or at `cap`, where no autoscaler runs)."""
    target = queue_target_per_instance(prefetch, max_replicas, queue_depth)
    in_flight = instances * prefetch if unacknowledged is None else unacknowledged
    metric = in_flight + ready
    most = max_replicas if cap is None else cap
    wanted = hpa_desired(metric, instances, target, min_replicas, most)
    head = (f"{service}: {ready} ready + {in_flight} unacknowledged = {metric} messages over {instances} instances "
            f"at {decimal_text(target)} per instance (prefetch {prefetch})")
    if wanted > instances:
        capped = (" (the autoscaler's maximum, as the connection budget counts it)"
                  if cap is None and wanted == max_replicas else "")
        text = f"{head}: scale {service} to {wanted} instances{capped}"
    elif wanted < instances:
        text = f"{head}: fewer instances hold the work; {service} may scale down to {wanted}"
    else:
        text = f"{head}: {instances} instances keep up; no change"
    return QueueAdvice(service, instances, wanted, text)


def service_queue_advice(service: ServiceSpec, target: str, ready: int | None = None, most: int = 500) -> QueueAdvice:
    """queue_advice for one resolved service: at `ready` messages waiting (unset: the service's queue_depth, where
    the guide's alert fires), its instances each holding their prefetch. Kubernetes: between the autoscaler's
    bounds, as KEDA would act; Docker (no autoscaler): from its instance count, up to `most` instances. For the
    plan and the queue-depth alert's annotation."""
    kube = target == "kubernetes"
    low = service.autoscaling.min_replicas if kube else 1
    return queue_advice(service.name, ready=service.queue_depth if ready is None else ready,
                        instances=low if kube else service.instances, prefetch=service.prefetch,
                        max_replicas=service.autoscaling.max_replicas, queue_depth=service.queue_depth,
                        min_replicas=low, cap=None if kube else most)
