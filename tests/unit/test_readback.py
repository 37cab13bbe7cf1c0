"""Inputs rendered as the Docker provider reads them back, so a second `pulumi up` changes nothing."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from model.readback import docker_cpus, docker_cpus_round_trip, go_duration, nearest_round_trip_cpus
from model.tiers import TIERS
from testkit import render_stack
from tests.helpers import spec_for

CONTAINER = "docker:index/container:Container"

# What the provider's nanoInt64ToDecimalString gives for these limits, printed by the same arithmetic in Go
# (math/big's FloatString(9), the nine-zeros rule, FloatString(1)) on this machine's Go toolchain.
READ_BACK = [(1000, "1.0"), (2000, "2.0"), (4000, "4.0"), (500, "0.5"), (250, "0.25"), (1500, "1.5"),
             (10000, "10."), (20000, "20."), (100000, "100."), (100, "0.1"), (1250, "1.25"), (10500, "10.5"),
             (125, "0.125"), (1001, "1.001"), (150, "0.15"), (950, "0.95"), (50, "0.1"), (1, "0.0")]


@pytest.mark.parametrize(("millis", "text"), READ_BACK)
def test_cpus_are_written_as_the_provider_reads_them_back(millis: int, text: str) -> None:
    assert docker_cpus(millis) == text


@given(st.integers(min_value=10, max_value=256_000))
def test_a_limit_round_trips_exactly_when_its_read_back_means_the_same(millis: int) -> None:
    means = Fraction(docker_cpus(millis).rstrip(".")) * 1000
    assert docker_cpus_round_trip(millis) == (means == millis)
    if means == millis:
        # What was written is what is read back, so the provider sees no change next time.
        assert docker_cpus(int(means)) == docker_cpus(millis)


def test_every_tier_limit_round_trips() -> None:
    for preset in TIERS.values():
        for resources in preset.resources.values():
            assert docker_cpus_round_trip(resources.limits.cpu_millis)


def test_a_limit_that_cannot_round_trip_is_refused_with_neighbours_that_do() -> None:
    from model.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        spec_for("dev", **{"redis__resources__limits__cpu_millis": 50})
    message = str(caught.value)
    assert "banyan:redis.resources.limits.cpu_millis: got 50" in message
    low, high = nearest_round_trip_cpus(50)
    assert f"such as {low} or {high}" in message
    assert docker_cpus_round_trip(low) and docker_cpus_round_trip(high) and low < 50 < high
    assert nearest_round_trip_cpus(10) == [11], "nothing under 10 round-trips (0.001-0.009 come back as 0.0)"


def test_the_same_limit_is_fine_on_kubernetes() -> None:
    assert spec_for("prod", **{"redis__resources__limits__cpu_millis": 50}).redis.resources.limits.cpu_millis == 50


@pytest.mark.parametrize(("seconds", "text"), [(0, "0s"), (3, "3s"), (59, "59s"), (60, "1m0s"), (90, "1m30s"),
                                               (600, "10m0s"), (3600, "1h0m0s"), (3661, "1h1m1s")])
def test_durations_are_written_as_go_prints_them(seconds: int, text: str) -> None:
    assert go_duration(seconds) == text


def test_every_container_is_rendered_in_read_back_form() -> None:
    """cpus and the health check's durations, and no swap beyond the memory limit (an in-place raise of the
    limit past twice the old one would fail); a changed health check replaces the container."""
    rendering = render_stack("dev", set={"tier": "medium"})
    containers = rendering.of_type(CONTAINER)
    assert containers
    for c in containers:
        inputs = c.plain_inputs
        cpus = inputs["cpus"]
        assert cpus == docker_cpus(int(Fraction(cpus.rstrip(".")) * 1000)), c.name
        for key in ("interval", "timeout", "startPeriod"):
            value = (inputs.get("healthcheck") or {}).get(key)
            assert value is None or value in {go_duration(s) for s in range(0, 7200)}, (c.name, key, value)
        if inputs.get("healthcheck"):
            assert inputs["memorySwap"] == inputs["memory"], c.name
            assert "healthcheck" in c.replace_on_changes, c.name
