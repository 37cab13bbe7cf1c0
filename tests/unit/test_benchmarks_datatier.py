"""The data-tier benchmarks' pure parts: how ratios are paired and percentiles taken, what the stock side's
configuration keeps of ours, and how pgbench's and redis-benchmark's output is read. No server, no timing."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from benchmarks import postgres, rabbitmq, redis_cluster
from benchmarks.common import paired, percentile, rotation
from components.rabbitmq.config import render_rabbitmq_conf
from components.redis.config import render_redis_conf
from tests.helpers import spec_for


@dataclass
class _Run:
    config: str
    round: int
    value: float


def test_ratios_are_paired_within_a_round() -> None:
    runs = [_Run("ours", 0, 10), _Run("stock", 0, 5), _Run("stock", 1, 4), _Run("ours", 1, 2), _Run("ours", 2, 1)]
    # Round 2 has no stock run: it has no ratio. A side slower in every round stays slower whatever the drift.
    assert paired(runs, "ours", "stock", "value") == [2.0, 0.5]


def test_percentile_is_a_measured_value() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 99) == 99.0
    assert percentile(values, 50) == 50.0
    assert percentile([3.0, 1.0, 2.0], 99) == 3.0


def test_every_side_leads_a_round_in_turn() -> None:
    assert [rotation(("ours", "stock"), r)[0] for r in range(4)] == ["ours", "stock", "ours", "stock"]


def test_stock_rabbitmq_conf_forms_the_same_cluster_and_nothing_else_of_ours() -> None:
    ours = render_rabbitmq_conf(spec_for("dev", tier="medium").rabbitmq)
    stock = rabbitmq.stock_conf(ours)
    nodes = [ln for ln in ours.splitlines() if ln.startswith("cluster_formation.")]
    assert len(nodes) == 4 and all(ln in stock.splitlines() for ln in nodes)
    for key in ("vm_memory_high_watermark", "disk_free_limit"):
        assert key in ours and key not in stock
    assert "cluster_partition_handling" not in stock


def test_stock_redis_conf_keeps_our_persistence_class_only() -> None:
    spec = spec_for("dev", tier="medium").redis
    ours = render_redis_conf(spec, "redis-node-1")
    stock = redis_cluster.stock_conf(ours).splitlines()
    assert f"appendonly {'yes' if spec.persistence else 'no'}" in stock
    assert "cluster-enabled yes" in stock and "dir /data" in stock
    assert not [ln for ln in stock if ln.startswith(("maxmemory", "save", "cluster-node-timeout"))]


def test_pgbench_output_and_logs_are_read(tmp_path: Path) -> None:
    output = "latency average = 2.4 ms\ntps = 3235.123456 (without initial connection time)\n"
    assert postgres._tps(output) == 3235.123456
    with pytest.raises(RuntimeError, match="no tps line"):
        postgres._tps("pgbench: error: connection refused")
    # pgbench -l: client, transaction, latency in microseconds, script, epoch seconds, microseconds.
    (tmp_path / "pg.123").write_text("0 1 2500 0 1700000000 1\n1 1 1500 0 1700000000 2\n")
    (tmp_path / "pg.123.1").write_text("2 1 40000 0 1700000000 3\n")
    assert sorted(postgres._latencies(tmp_path / "pg")) == [1.5, 2.5, 40.0]
    assert not list(tmp_path.iterdir()), "read logs are removed"
