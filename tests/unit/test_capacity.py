"""The guide's worked examples and the shape rules come out of capacity.py."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from model import capacity
from model.spec import BudgetLine


def test_guide_example_instances_from_load() -> None:
    # "5000 / 1000 = 5; with headroom (2x): 5 x 2 = 10 instances"
    assert capacity.instances_for_load(5000, 1000, 2.0) == 10
    assert capacity.instances_for_load(5000, 1000, 1.5) == 8
    assert capacity.instances_for_load(5001, 1000, 1.0) == 6


def test_guide_example_connection_budget() -> None:
    # "5 service instances x 10 connections = 50 total connections; ensure max_connections > 50"
    lines = [BudgetLine(client="svc", max_instances=5, pool_max=10)]
    budget, derived = capacity.connection_budget(lines, None)
    assert budget.total == 50
    assert derived and budget.fits and budget.max_connections > 50
    # Under 80 %: 50 needs more than 62.5, so 63 is the least that works and 62 is not enough.
    assert capacity.required_max_connections(50) == 63
    assert capacity.connection_budget(lines, 63)[0].fits
    assert not capacity.connection_budget(lines, 62)[0].fits


def test_too_low_max_connections_shows_the_arithmetic() -> None:
    lines = [BudgetLine(client="svc", max_instances=5, pool_max=10)]
    budget, _ = capacity.connection_budget(lines, 50)
    message = capacity.budget_shortfall(budget)
    assert message is not None
    assert "svc 5 x 10 = 50 connections" in message
    assert "80% of max_connections 50 = 40" in message
    assert "at least 63" in message


@given(st.lists(st.tuples(st.integers(1, 60), st.integers(1, 50)), min_size=1, max_size=8))
def test_derived_max_connections_always_fits_and_required_is_tight(pairs: list[tuple[int, int]]) -> None:
    lines = [BudgetLine(client=f"c{i}", max_instances=n, pool_max=p) for i, (n, p) in enumerate(pairs)]
    budget, derived = capacity.connection_budget(lines, None)
    assert derived and budget.fits
    required = capacity.required_max_connections(budget.total)
    assert capacity.connection_budget(lines, required)[0].fits
    assert not capacity.connection_budget(lines, required - 1)[0].fits


def test_rabbitmq_even_cluster_is_rejected_unless_allowed() -> None:
    assert capacity.rabbitmq_shape_error(3, quorum=True, allow_even=False) is None
    message = capacity.rabbitmq_shape_error(4, quorum=True, allow_even=False)
    assert message is not None and "odd" in message and "allow_even_nodes" in message
    assert capacity.rabbitmq_shape_error(4, quorum=True, allow_even=True) is None
    assert capacity.rabbitmq_shape_error(4, quorum=False, allow_even=False) is None


def test_redis_shapes() -> None:
    assert capacity.redis_shape(1, 0) == capacity.RedisShape("standalone", 1, 0)
    assert capacity.redis_shape(3, 0) == capacity.RedisShape("cluster", 3, 0)
    assert capacity.redis_shape(6, 1) == capacity.RedisShape("cluster", 3, 1)
    assert capacity.redis_shape(9, 2) == capacity.RedisShape("cluster", 3, 2)
    four = capacity.redis_shape(4, 1)
    assert isinstance(four, str) and "2 masters" in four and "at least 3" in four
    assert isinstance(capacity.redis_shape(7, 1), str)
    assert isinstance(capacity.redis_shape(2, 0), str)
    assert isinstance(capacity.redis_shape(1, 1), str)
