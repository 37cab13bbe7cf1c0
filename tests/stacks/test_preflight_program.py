"""The preflight inside the stack program (Docker and Kubernetes): a refusal is a RunError before any resource is
registered; under mocks no real engine or cluster is read unless a snapshot is injected."""

from __future__ import annotations

from typing import Any

import pulumi
import pytest

from infra import preflight
from infra.program import main
from model.preflight import EngineContainer, EngineSnapshot
from model.preflight_kubernetes import GIB, KubernetesSnapshot, LivePostgres, LiveRabbitMQ, LiveRedis
from testkit import BanyanMocks, apply_sets, read_stack_file, render_program, render_stack, to_engine_config


def container(instance: str, part: str, stack: str = "dev", ports: tuple[int, ...] = ()) -> EngineContainer:
    labels = {"banyan.project": "banyan", "banyan.stack": stack, "banyan.part": part, "banyan.instance": instance}
    return EngineContainer(f"banyan-{stack}-{instance}", "running", labels, frozenset(ports))


# dev2's Nginx holds dev's public port; dev runs a medium RabbitMQ (3 nodes) and is rendered small.
REFUSED = EngineSnapshot((
    container("nginx", "nginx", stack="dev2", ports=(8080,)),
    *(container(f"rabbitmq-{i}", "rabbitmq") for i in (1, 2, 3)),
))


class CountingMocks(BanyanMocks):
    def __init__(self) -> None:
        self.registered: list[str] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        self.registered.append(f"{args.typ} {args.name}")
        return super().new_resource(args)


def test_a_refusal_is_a_run_error_listing_every_problem_and_nothing_is_registered() -> None:
    raw, secret = to_engine_config(apply_sets(read_stack_file("dev"), {"tier": "small"}))
    mocks = CountingMocks()
    with preflight.use_snapshot(REFUSED), pytest.raises(pulumi.RunError) as caught:
        render_program(main, raw, project="banyan", stack="dev", secret_keys=secret, mocks=mocks)
    assert isinstance(caught.value, preflight.PreflightError)
    message = str(caught.value)
    assert message.startswith("the Docker engine (an injected snapshot) already holds what this stack would break "
                              "(2 problems); nothing was deployed:\n")
    assert ("  - banyan:nginx.port: got 8080; host port 8080 is already published by container banyan-dev2-nginx "
            "(banyan.stack dev2)") in message
    assert '  - banyan:tier: got "small"; RabbitMQ would shrink from 3 nodes to 1' in message
    assert "Traceback" not in message
    assert mocks.registered == []


def test_render_stack_takes_the_snapshot_and_our_own_containers_pass() -> None:
    with pytest.raises(preflight.PreflightError, match=r"banyan:nginx\.port"):
        render_stack("dev", engine=REFUSED)
    mine = EngineSnapshot((container("nginx", "nginx", ports=(8080,)), container("rabbitmq-1", "rabbitmq",
                                                                                 ports=(15672,))))
    rendering = render_stack("dev", engine=mine)
    assert rendering.of_type("docker:index/container:Container")


def test_under_mocks_no_engine_is_read_without_a_snapshot(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*_: object, **__: object) -> None:
        raise AssertionError("the mocks run read the real engine")

    monkeypatch.setattr(preflight, "read_engine", forbidden)
    monkeypatch.setattr(preflight, "locate", forbidden)
    rendering = render_stack("dev")
    assert rendering.of_type("docker:index/container:Container")
    assert not any("preflight" in w for w in rendering.warnings)


def test_preflight_false_turns_it_off_and_says_so() -> None:
    rendering = render_stack("dev", set={"tier": "small", "preflight": False}, engine=REFUSED)
    assert rendering.of_type("docker:index/container:Container")
    assert ("info", "banyan:preflight is false: the Docker engine was not checked") in rendering.log


def test_a_kubernetes_stack_is_not_checked_against_a_docker_engine() -> None:
    assert render_stack("prod", engine=REFUSED, preview=True).resources


def test_stopped_nodes_removed_by_the_up_are_warned_about() -> None:
    stopped = EngineSnapshot((*(container(f"rabbitmq-{i}", "rabbitmq") for i in (1,)),
                              EngineContainer("banyan-dev-rabbitmq-2", "exited",
                                              {"banyan.project": "banyan", "banyan.stack": "dev",
                                               "banyan.part": "rabbitmq", "banyan.instance": "rabbitmq-2"})))
    rendering = render_stack("dev", engine=stopped)
    assert any(w.startswith("RabbitMQ node rabbitmq-2: stopped, and this `up` removes the container")
               for w in rendering.warnings)


# ---- Kubernetes ------------------------------------------------------------------------------------------------

# prod runs a medium platform (3 RabbitMQ nodes, a 3-node Redis Cluster, 50 GiB PostgreSQL volumes).
MEDIUM_LIVE = KubernetesSnapshot(
    "banyan",
    rabbitmq=LiveRabbitMQ("rabbitmq", 3, 20 * GIB, "rabbitmq-server", 3),
    redis=LiveRedis("redis-node", 3, "cluster", ("data",)),
    postgres=LivePostgres("postgres", 3, 50 * GIB),
)


def test_a_kubernetes_refusal_registers_nothing_and_names_every_key() -> None:
    raw, secret = to_engine_config(apply_sets(read_stack_file("prod"), {"tier": "small"}))
    mocks = CountingMocks()
    with preflight.use_snapshot(MEDIUM_LIVE), pytest.raises(pulumi.RunError) as caught:
        render_program(main, raw, project="banyan", stack="prod", secret_keys=secret, mocks=mocks)
    assert isinstance(caught.value, preflight.PreflightError)
    message = str(caught.value)
    assert message.startswith("the Kubernetes cluster (an injected snapshot) already holds what this stack would "
                              "break (4 problems); nothing was deployed:\n")
    lines = [line for line in message.splitlines() if line.startswith("  - ")]
    assert [line.split(" would ")[0] for line in lines] == [
        '  - banyan:tier: got "small"; RabbitMQ', '  - banyan:tier: got "small"; RabbitMQ\'s volumes',
        '  - banyan:tier: got "small"; Redis', '  - banyan:tier: got "small"; PostgreSQL\'s volumes']
    assert "Traceback" not in message
    # Not even the provider or the namespace: nothing exists that a half-applied `up` could leave behind.
    assert mocks.registered == []


def test_pinning_what_cannot_shrink_leaves_only_the_clusters_to_refuse() -> None:
    sets = {"tier": "small", "rabbitmq.storage_gib": 20, "postgres.storage_gib": 50}
    with pytest.raises(preflight.PreflightError) as caught:
        render_stack("prod", set=sets, cluster=MEDIUM_LIVE)
    assert "(2 problems)" in str(caught.value)
    assert "banyan:tier" in str(caught.value) and "volumes" not in str(caught.value)


def test_growth_deploys_and_warns_about_the_redis_nodes_to_add() -> None:
    rendering = render_stack("prod", set={"tier": "large"}, cluster=MEDIUM_LIVE)
    cluster = next(r for r in rendering.of_type("kubernetes:rabbitmq.com/v1beta1:RabbitmqCluster"))
    assert cluster.plain_inputs["spec"]["replicas"] == 5
    assert any(w.startswith("Redis grows from 3 to 6 cluster nodes") for w in rendering.warnings)
    assert render_stack("prod", set={"tier": "medium"}, cluster=MEDIUM_LIVE).warnings == \
        render_stack("prod", set={"tier": "medium"}).warnings
