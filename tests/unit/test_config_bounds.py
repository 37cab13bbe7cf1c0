"""Every numeric bound of the stack config (model/config.py, Field ge/le), over the whole range: a value at
each limit is accepted, one past it is refused with a problem naming the key and the value, and so is any
value hypothesis draws inside or outside.

The bounds are written out here: they are promises to stack files (and the README's reference is generated
from the models, so it would follow a changed bound silently). A new bounded field must be added below.
"""

from __future__ import annotations

import math
import types
import typing
from typing import Any

import annotated_types
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from model.config import StackConfig, parse_config
from testkit import apply_sets, read_stack_file, to_engine_config

# model class -> field -> (lowest allowed, highest allowed or None for no upper bound)
BOUNDS: dict[str, dict[str, tuple[float, float | None]]] = {
    "Amount": {"cpu_millis": (10, 256_000), "memory_mib": (16, 1_048_576)},
    "AutoscalingOverride": {"min_replicas": (1, 500), "max_replicas": (1, 500), "cpu_percent": (1, 100),
                            "memory_percent": (1, 100)},
    "PoolOverride": {"min": (0, 1000), "max": (1, 1000), "idle_timeout_ms": (1000, 3_600_000)},
    "ServiceConfig": {"instances": (1, 500), "port": (1, 65535), "prefetch": (1, 1000)},
    "QueueScalingConfig": {"queue_depth": (1, 100_000), "fallback_replicas": (1, 500)},
    "GatewayConfig": {"instances": (1, 500), "port": (1, 65535), "capacity_rps": (1, None),
                      "expected_peak_rps": (1, None), "headroom": (1.0, 10.0)},
    "RateLimitConfig": {"max": (1, None), "window_ms": (1000, None)},
    "CircuitBreakerConfig": {"failure_threshold": (1, None), "success_threshold": (1, None),
                             "recovery_timeout_ms": (100, None)},
    "BackupConfig": {"retention_days": (1, 3650), "full_backup_hours": (1, 168),
                     "max_wal_backlog_mib": (64, 1_048_576)},
    "PostgresConfig": {"version": (13, 18), "replicas": (0, 15), "max_connections": (10, 10_000),
                       "storage_gib": (1, 65_536)},
    "RabbitMQConfig": {"nodes": (1, 500), "management_host_port": (1, 65535), "storage_gib": (1, 65_536)},
    "RedisConfig": {"nodes": (1, 500), "replicas_per_master": (0, 5), "storage_gib": (1, 65_536)},
    "NginxConfig": {"port": (1, 65535), "instances": (1, 500), "keepalive_connections": (1, 10_000),
                    "connect_timeout_s": (1, 300), "read_timeout_s": (1, 3600)},
    "DockerConfig": {"host_cpu_millis": (1000, 1_024_000), "host_memory_mib": (512, 16_777_216)},
    "MonitoringConfig": {"prometheus_port": (1, 65535), "scrape_interval_s": (1, 300),
                         "evaluation_interval_s": (1, 300), "retention_days": (1, 3650)},
}


def _models_in(annotation: Any) -> list[tuple[type[BaseModel], bool]]:
    """Config models an annotation holds, and whether inside a sequence (services[])."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [(annotation, False)]
    found: list[tuple[type[BaseModel], bool]] = []
    origin = typing.get_origin(annotation)
    for arg in typing.get_args(annotation):
        for model, _ in _models_in(arg):
            found.append((model, origin is tuple or origin is list))
    return found


def _bounds(metadata: list[Any], annotation: Any) -> tuple[Any, Any]:
    lo = hi = None
    items = list(metadata)
    for arg in typing.get_args(annotation) if typing.get_origin(annotation) in (typing.Union, types.UnionType) else ():
        items.extend(getattr(arg, "__metadata__", ()))
        for inner in getattr(arg, "__metadata__", ()):
            items.extend(getattr(inner, "metadata", ()))
    for item in items:
        if isinstance(item, annotated_types.Ge):
            lo = item.ge
        elif isinstance(item, annotated_types.Le):
            hi = item.le
        elif isinstance(item, annotated_types.Gt | annotated_types.Lt):
            raise AssertionError(f"strict bound {item}: give it here as ge/le")
    return lo, hi


def bounded_fields(model: type[BaseModel] = StackConfig, prefix: str = "") -> dict[str, tuple[str, str, Any, Any]]:
    """Every numerically bounded field reachable from the stack config: key path -> (model, field, lo, hi)."""
    out: dict[str, tuple[str, str, Any, Any]] = {}
    for name, info in model.model_fields.items():
        path = f"{prefix}{name}"
        lo, hi = _bounds(info.metadata, info.annotation)
        if lo is not None or hi is not None:
            out[path] = (model.__name__, name, lo, hi)
        for inner, sequence in _models_in(info.annotation):
            out.update(bounded_fields(inner, f"{path}[0]." if sequence else f"{path}."))
    return out


FIELDS = bounded_fields()


def problems_for(key: str, value: Any) -> list[tuple[str, Any]]:
    config = apply_sets(read_stack_file("dev"), {key: value})
    raw, _ = to_engine_config(config)
    _, problems = parse_config(raw)
    return [(p.key, p.value) for p in problems]


def past(value: float, direction: float) -> float:
    return value + direction if isinstance(value, int) else math.nextafter(value, direction * math.inf)


def test_the_bounds_are_the_documented_ones() -> None:
    found: dict[str, dict[str, tuple[float, float | None]]] = {}
    for model, field, lo, hi in FIELDS.values():
        found.setdefault(model, {})[field] = (lo, hi)
    assert found == BOUNDS
    assert len(FIELDS) > 50, "every part's resources, pools and autoscaling are reached"


@pytest.mark.parametrize("key", sorted(FIELDS))
def test_each_limit_is_accepted_and_one_past_it_refused(key: str) -> None:
    _, _, lo, hi = FIELDS[key]
    assert problems_for(key, lo) == []
    assert problems_for(key, past(lo, -1)) == [(f"banyan:{key}", past(lo, -1))]
    if hi is not None:
        assert problems_for(key, hi) == []
        assert problems_for(key, past(hi, +1)) == [(f"banyan:{key}", past(hi, +1))]


@st.composite
def inside_or_outside(draw: st.DrawFn) -> tuple[str, Any, bool]:
    key = draw(st.sampled_from(sorted(FIELDS)))
    _, _, lo, hi = FIELDS[key]
    numbers = st.floats(allow_nan=False, allow_infinity=False, width=32) if isinstance(lo, float) else st.integers()
    value = draw(numbers.filter(lambda v: -1e12 < v < 1e12))
    return key, value, lo <= value and (hi is None or value <= hi)


@settings(max_examples=400, deadline=None)
@given(inside_or_outside())
def test_any_value_is_accepted_exactly_when_it_is_in_range(case: tuple[str, Any, bool]) -> None:
    key, value, allowed = case
    assert problems_for(key, value) == ([] if allowed else [(f"banyan:{key}", value)])
