"""The queue-depth arithmetic (model/capacity.py) and its config (services[].queue_scaling): the target per
instance keeps busy instances and scales up on the guide's backlog at every replica count, under the HPA's own
rule; bad settings are refused naming the key."""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from model import capacity
from model.errors import ConfigError
from testkit.component import stack_spec

TOLERANCE = capacity.HPA_TOLERANCE


def kubernetes_hpa(metric_milli: int, replicas: int, target_milli: int) -> int:
    """replica_calculator.go GetExternalPerPodMetricReplicas, transcribed: `usageRatio := float64(usage) /
    (float64(targetUsagePerPod) * float64(replicaCount))`, a change only when `math.Abs(1.0-usageRatio) >
    c.tolerance` (0.1), then `math.Ceil(float64(usage) / float64(targetUsagePerPod))`."""
    ratio = float(metric_milli) / (float(target_milli) * float(replicas))
    if abs(1.0 - ratio) > 0.1:
        return math.ceil(float(metric_milli) / float(target_milli))
    return replicas


@pytest.mark.parametrize(("metric", "replicas", "target", "expected"), [
    (105, 10, 10, 10),  # ratio 1.05: within the tolerance, no change
    (110, 10, 10, 11),  # ratio 1.1, which in float64 is just past the tolerance: ceil(110 / 10)
    (90, 10, 10, 10),   # ratio 0.9: within (1 - 0.9 is just under 0.1 in float64)
    (89, 10, 10, 9),    # ratio 0.89: ceil(89 / 10)
    (130, 3, 10, 13),   # 100 waiting + 3 x 10 in flight, 10 per instance
])
def test_hpa_rule_matches_the_replica_calculator(metric: int, replicas: int, target: int, expected: int) -> None:
    assert kubernetes_hpa(metric * 1000, replicas, target * 1000) == expected
    assert capacity.hpa_desired(metric, replicas, Fraction(target), 1, 10_000) == expected
    assert capacity.hpa_desired(metric, replicas, Fraction(target), 1, 12) == min(expected, 12)


def test_the_guides_numbers() -> None:
    # I/O-bound prefetch 10 (the guide), the small tier's autoscaler maximum 10: a busy instance's prefetch.
    assert capacity.queue_target_per_instance(10, 10) == 10
    assert capacity.decimal_text(capacity.queue_target_per_instance(10, 40)) == "10"
    # Prefetch 100 x 39 instances: the tolerance (10 % of 3900) would hide a backlog of 100, so the target drops.
    target = capacity.queue_target_per_instance(100, 40)
    assert target < 100 and capacity.decimal_text(target) == "93.24"
    assert capacity.queue_target_per_instance(7, 1) == 7
    advice = capacity.queue_advice("user-service", ready=100, instances=3, prefetch=10, max_replicas=10)
    assert advice.wanted == 10 and "scale user-service to 10 instances" in advice.text
    advice = capacity.queue_advice("user-service", ready=100, instances=3, prefetch=10, max_replicas=10, cap=500)
    assert advice.wanted == 13, advice.text  # (3 x 10 in flight + 100 waiting) / 10 per instance


@settings(max_examples=300, deadline=None)
@given(prefetch=st.integers(1, 1000), high=st.integers(2, 500), depth=st.integers(1, 100_000),
       data=st.data())
def test_busy_instances_stay_and_the_backlog_scales_up_at_every_count(prefetch: int, high: int, depth: int,
                                                                       data: Any) -> None:
    target = capacity.queue_target_per_instance(prefetch, high, depth)
    milli = int(target * 1000)
    assert Fraction(milli, 1000) == target and 0 < target <= prefetch
    n = data.draw(st.integers(1, high - 1), label="instances")
    busy = n * prefetch
    # Nothing waiting, every instance holding its prefetch: neither scale-down nor scale-up.
    assert kubernetes_hpa(busy * 1000, n, milli) == n
    # The guide's backlog waiting (each consumer then holds its full prefetch): more instances.
    assert kubernetes_hpa((busy + depth) * 1000, n, milli) > n
    assert capacity.hpa_desired(busy + depth, n, target, 1, high) > n
    assert capacity.decimal_text(target) == f"{float(target):.3f}".rstrip("0").rstrip(".")


def test_advice_for_a_stack_follows_its_target() -> None:
    dev = stack_spec("dev")
    svc = dev.services[0]
    advice = capacity.service_queue_advice(svc, "docker")
    assert advice.instances == svc.instances
    per = capacity.queue_target_per_instance(svc.prefetch, svc.autoscaling.max_replicas, svc.queue_depth)
    assert advice.wanted == -(-(svc.instances * svc.prefetch + svc.queue_depth) // per)
    calm = capacity.service_queue_advice(svc, "docker", ready=0)
    assert calm.wanted == svc.instances and "no change" in calm.text


def _problems(stack: str, sets: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        stack_spec(stack, set=sets)
    return [p.render() for p in caught.value.problems]


def test_bad_queue_scaling_is_refused_naming_the_key() -> None:
    both = _problems("prod", {"services[0].queue_scaling.queues": ["a"], "services[0].queue_scaling.pattern": "^a"})
    assert any("banyan:services[0].queue_scaling.pattern" in p and "one of the two" in p for p in both), both
    bad = _problems("prod", {"services[0].queue_scaling.pattern": "(unclosed"})
    assert any("banyan:services[0].queue_scaling.pattern" in p and "regular expression" in p for p in bad), bad
    fallback = _problems("prod", {"services[0].queue_scaling.enabled": True,
                                  "services[0].queue_scaling.fallback_replicas": 41})
    assert any("banyan:services[0].queue_scaling.fallback_replicas" in p and "max_replicas (40)" in p
               for p in fallback), fallback


def test_the_scaler_resolves_on_kubernetes_only() -> None:
    on = {"services[1].queue_scaling.enabled": True, "services[1].queue_scaling.queues": ["a.b", "c"]}
    prod = stack_spec("prod", set=on)
    qs = prod.services[1].queue_scaling
    assert qs is not None and qs.queues == ("a.b", "c") and qs.pattern is None
    assert qs.fallback_replicas == prod.services[1].autoscaling.min_replicas
    assert prod.services[0].queue_scaling is None and prod.queue_scaled == (prod.services[1],)
    first = stack_spec("prod", set={"services[0].queue_scaling.enabled": True}).services[0].queue_scaling
    assert first is not None and first.pattern == r"^service\.user-service\.commands\."
    dev = stack_spec("dev", set=on)
    assert dev.queue_scaled == ()
    assert any("services[1].queue_scaling.enabled only applies to target kubernetes" in w for w in dev.warnings)
