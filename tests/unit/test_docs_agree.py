"""Docstrings that quote a tier's number say what the tier table says: a changed preset that leaves a
docstring (and so the README's generated reference) behind fails here."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from pydantic import BaseModel

from model import config as c
from model import tiers
from model.tiers import TIERS, TierPreset


def per_tier(pick: Callable[[TierPreset], int]) -> str:
    return ", ".join(f"{name} {pick(preset)}" for name, preset in TIERS.items())


def per_kind(values: dict[str, int]) -> str:
    return ", ".join(f"{kind} {value}" for kind, value in values.items())


QUOTED: list[tuple[type[BaseModel], str, str]] = [
    (c.PostgresConfig, "replicas", f"Unset: {per_tier(lambda t: t.postgres_replicas)}."),
    (c.PostgresConfig, "storage_gib", f"Unset: {per_tier(lambda t: t.storage_gib['postgres'])}."),
    (c.RabbitMQConfig, "nodes", f"Unset: {per_tier(lambda t: t.rabbitmq_nodes)}."),
    (c.RabbitMQConfig, "storage_gib", f"Unset: {per_tier(lambda t: t.storage_gib['rabbitmq'])}."),
    (c.RedisConfig, "nodes", f"Unset: {', '.join(str(t.redis_nodes) for t in TIERS.values())}."),
    (c.RedisConfig, "replicas_per_master", f"Unset: {per_tier(lambda t: t.redis_replicas_per_master)}."),
    (c.RedisConfig, "storage_gib", f"Unset: {per_tier(lambda t: t.storage_gib['redis'])}."),
    (c.NginxConfig, "instances", f"Unset: {per_tier(lambda t: t.nginx_instances)} on Kubernetes."),
    (c.AutoscalingOverride, "cpu_percent", f"Unset: {tiers.HPA_CPU_PERCENT} (the guide)."),
    (c.AutoscalingOverride, "memory_percent", f"Unset: {tiers.HPA_MEMORY_PERCENT} (the guide)."),
    (c.ServiceConfig, "prefetch", f"Unset: {per_kind({k: low for k, (low, _) in tiers.PREFETCH_RANGE.items()})}."),
    (c.PoolOverride, "max", f"Unset: by workload kind ({per_kind({k: p.max for k, p in tiers.POOL.items()})}; "
                            f"gateway {tiers.GATEWAY_POOL.max})."),
    (c.PoolOverride, "min", f"Unset: {tiers.GATEWAY_POOL.min} (the guide), at most max."),
    (c.PoolOverride, "idle_timeout_ms", f"Unset: {tiers.GATEWAY_POOL.idle_timeout_ms} (the guide)."),
]


@pytest.mark.parametrize(("model", "field", "quote"), QUOTED, ids=[f"{m.__name__}.{f}" for m, f, _ in QUOTED])
def test_the_docstring_quotes_the_tier_table(model: type[BaseModel], field: str, quote: str) -> None:
    description = model.model_fields[field].description or ""
    assert quote in description, f"{model.__name__}.{field}: {description!r} should say {quote!r}"


def test_every_quoted_number_is_checked() -> None:
    """A docstring that quotes per-tier numbers is in the table above (or says where it comes from)."""
    checked = {(m, f) for m, f, _ in QUOTED}
    for model in (c.PostgresConfig, c.RabbitMQConfig, c.RedisConfig, c.NginxConfig, c.AutoscalingOverride,
                  c.ServiceConfig, c.GatewayConfig, c.PoolOverride):
        for name, info in model.model_fields.items():
            text = info.description or ""
            if "Unset:" in text and any(ch.isdigit() for ch in text.split("Unset:", 1)[1]):
                assert (model, name) in checked or (model, name) in {
                    # The budget's 80 % is not a tier number.
                    (c.PostgresConfig, "max_connections"),
                    # The rule it states is checked below.
                    (c.AutoscalingOverride, "max_replicas"),
                }, f"{model.__name__}.{name} quotes numbers no test checks: {text!r}"


def test_autoscaler_max_is_the_next_tiers_count() -> None:
    """AutoscalingOverride.max_replicas: "Unset: the next tier's count (large: 2x)"."""
    presets = list(TIERS.values())
    for preset, bigger in zip(presets, [*presets[1:], None], strict=True):
        if bigger is None:
            assert (preset.gateway_max, preset.service_max) == (2 * preset.gateway_instances,
                                                                2 * preset.service_instances)
        else:
            assert (preset.gateway_max, preset.service_max) == (bigger.gateway_instances, bigger.service_instances)
