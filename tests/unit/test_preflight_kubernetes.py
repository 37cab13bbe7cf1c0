"""The Kubernetes preflight's rules (model/preflight_kubernetes.py) on hand-made snapshots of the live objects, the
snapshot read from the objects the stack itself renders, and the I/O layer's kubeconfig handling and skips
(infra/preflight.py): no cluster needed (tests/e2e/apiserver reads a real API server)."""

from __future__ import annotations

import base64
import json
import os
import socket
import stat
import sys
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml
from pulumi.runtime import settings

from infra import preflight as io
from model.preflight import EngineSnapshot
from model.preflight_kubernetes import (
    GIB,
    REDIS_BUS_PORT_NAME,
    REDIS_MODE_ANNOTATION,
    KubernetesSnapshot,
    LivePostgres,
    LiveRabbitMQ,
    LiveRedis,
    check,
    quantity_bytes,
)
from model.spec import KubernetesSpec, PlatformSpec
from testkit import render_stack
from tests.helpers import spec_for

NS = "banyan"


def prod(tier: str, **sets: Any) -> PlatformSpec:
    return spec_for("prod", tier=tier, **sets)


def rabbit(replicas: int, *, sts: int | None = None, storage_gib: int | None = None,
           failure: str | None = None) -> KubernetesSnapshot:
    return KubernetesSnapshot(NS, rabbitmq=LiveRabbitMQ(
        "rabbitmq", replicas, None if storage_gib is None else storage_gib * GIB,
        statefulset="rabbitmq-server" if sts is not None else None, statefulset_replicas=sts,
        reconcile_failure=failure))


def redis(replicas: int, mode: str) -> KubernetesSnapshot:
    return KubernetesSnapshot(NS, redis=LiveRedis("redis-node", replicas, mode, ("data",)))  # type: ignore[arg-type]


def one_problem(spec: PlatformSpec, snapshot: KubernetesSnapshot) -> str:
    findings = check(spec, snapshot)
    assert len(findings.problems) == 1, findings.problems
    return findings.problems[0].render()


# ---- RabbitMQ -------------------------------------------------------------------------------------------------

def test_a_tier_move_down_that_shrinks_rabbitmq_is_refused_with_the_procedure() -> None:
    message = one_problem(prod("small"), rabbit(3, sts=3))
    assert message.startswith('banyan:tier: got "small"; RabbitMQ would shrink from 3 nodes to 1 (the small tier\'s '
                              "count): the RabbitMQ Cluster Operator refuses to scale a RabbitmqCluster down")
    kubectl = "kubectl -n banyan"
    for step in (f"`{kubectl} label rabbitmqcluster rabbitmq rabbitmq.com/pauseReconciliation=true`",
                 "for i from 2 down to 1, one node at a time",
                 f"`{kubectl} exec rabbitmq-server-0 -c rabbitmq -- rabbitmq-queues shrink "
                 "rabbit@rabbitmq-server-$i.rabbitmq-nodes.banyan`",
                 f"`{kubectl} scale statefulset rabbitmq-server --replicas=$i`",
                 "rabbitmqctl forget_cluster_node rabbit@rabbitmq-server-$i.rabbitmq-nodes.banyan",
                 f"`{kubectl} delete pvc persistence-rabbitmq-server-$i`",
                 "pause_minority",
                 f"""`{kubectl} patch rabbitmqcluster rabbitmq --type merge -p '{{"spec":{{"replicas":1}}}}'`""",
                 f"`{kubectl} label rabbitmqcluster rabbitmq rabbitmq.com/pauseReconciliation-`, then `pulumi up`",
                 'README, "Safe transitions on Kubernetes"'):
        assert step in message
    assert message.endswith("allowed now: 3 nodes or more (growth is allowed)")
    # The procedure's steps come in the order they must be run.
    order = ["pauseReconciliation=true", "rabbitmq-queues shrink", "scale statefulset", "forget_cluster_node",
             "patch rabbitmqcluster", "pauseReconciliation-`"]
    assert [message.index(s) for s in order] == sorted(message.index(s) for s in order)


def test_an_explicit_node_count_is_named_by_its_own_key() -> None:
    message = one_problem(prod("large", rabbitmq__nodes=3), rabbit(5))
    assert message.startswith("banyan:rabbitmq.nodes: got 3; RabbitMQ would shrink from 5 nodes to 3: ")
    assert "for i from 4 down to 3" in message
    assert "pause_minority" not in message, "3 nodes remain: nothing pauses"


def test_the_nodes_that_run_count_even_where_the_cluster_was_lowered_by_hand() -> None:
    # The RabbitmqCluster says 1 but the operator's StatefulSet still runs 3: the operator would refuse.
    assert "shrink from 3 nodes to 1" in one_problem(prod("small"), rabbit(1, sts=3))
    # The procedure done (StatefulSet and cluster both at 1): nothing left to refuse.
    assert check(prod("small"), rabbit(1, sts=1)).problems == ()


@pytest.mark.parametrize(("live", "tier"), [(1, "medium"), (3, "large"), (1, "small"), (5, "large")])
def test_growth_and_no_change_pass(live: int, tier: str) -> None:
    assert check(prod(tier), rabbit(live, sts=live)) == check(prod(tier), KubernetesSnapshot(NS))


def test_a_failing_reconcile_is_warned_about_with_the_operators_message() -> None:
    findings = check(prod("medium"), rabbit(3, failure="FailedReconcilePVC: shrinking persistent volumes"))
    assert findings.problems == ()
    assert findings.warnings == ("RabbitmqCluster rabbitmq: the operator reports ReconcileSuccess=False "
                                 "(FailedReconcilePVC: shrinking persistent volumes); `pulumi up` waits for it "
                                 "to be True",)


def test_a_smaller_rabbitmq_volume_is_refused_and_pinning_it_passes() -> None:
    medium = prod("medium")
    message = one_problem(medium, rabbit(3, storage_gib=50))
    assert message.startswith('banyan:tier: got "medium"; RabbitMQ\'s volumes would shrink from 50Gi to 20Gi per '
                              "node (the medium tier's size): the operator never shrinks a volume")
    assert message.endswith("allowed now: banyan:rabbitmq.storage_gib 50 or more (pin it when moving down a tier)")
    assert check(prod("medium", rabbitmq__storage_gib=50), rabbit(3, storage_gib=50)).problems == ()
    explicit = one_problem(prod("medium", rabbitmq__storage_gib=30), rabbit(3, storage_gib=50))
    assert explicit.startswith("banyan:rabbitmq.storage_gib: got 30; RabbitMQ's volumes would shrink from 50Gi")
    off = one_problem(prod("medium", rabbitmq__persistence=False), rabbit(3, storage_gib=20))
    assert off.startswith("banyan:rabbitmq.persistence: got false; RabbitMQ's volumes would shrink from 20Gi to 0Gi")


def test_a_large_to_small_move_lists_every_refusal_at_once() -> None:
    live = KubernetesSnapshot(NS, rabbitmq=LiveRabbitMQ("rabbitmq", 5, 50 * GIB),
                              redis=LiveRedis("redis-node", 6, "cluster"),
                              postgres=LivePostgres("postgres", 4, 200 * GIB))
    rendered = [p.render() for p in check(prod("small"), live).problems]
    assert [r.split(";")[0] for r in rendered] == ['banyan:tier: got "small"'] * 4
    assert [r.split("; ", 1)[1].split(" would")[0] for r in rendered] == [
        "RabbitMQ", "RabbitMQ's volumes", "Redis", "PostgreSQL's volumes"]


# ---- Redis ----------------------------------------------------------------------------------------------------

def test_standalone_to_cluster_is_refused() -> None:
    message = one_problem(prod("medium"), redis(1, "standalone"))
    assert message.startswith('banyan:tier: got "medium"; Redis would change from 1 node (standalone) to a 3-node '
                              "cluster (the medium tier): a live Redis cannot change mode")
    assert "`kubectl -n banyan delete statefulset redis-node`, `kubectl -n banyan delete pvc data-redis-node-0`" in (
        message)
    assert message.endswith("allowed now: 1 node (standalone)")


def test_cluster_to_standalone_is_refused_even_at_one_node() -> None:
    # A cluster shrunk by hand to one node is still a cluster: its mode annotation says so.
    message = one_problem(prod("small"), redis(1, "cluster"))
    assert "Redis would change from a 1-node cluster to 1 node (standalone)" in message
    assert "data-redis-node-0" in message


def test_fewer_cluster_nodes_are_refused_naming_the_pods_that_would_go() -> None:
    message = one_problem(prod("medium"), redis(6, "cluster"))
    assert message.startswith('banyan:tier: got "medium"; Redis would change from a 6-node cluster to a 3-node '
                              "cluster (the medium tier): the StatefulSet would remove redis-node-3, redis-node-4, "
                              "redis-node-5 at once")
    for step in ("redis-cli --cluster reshard", "redis-cli --cluster del-node",
                 "`kubectl -n banyan scale statefulset redis-node --replicas=3` and `pulumi up`"):
        assert step in message
    assert message.endswith("allowed now: 6 nodes or more")
    explicit = one_problem(prod("large", redis__nodes=3, redis__replicas_per_master=0), redis(6, "cluster"))
    assert explicit.startswith("banyan:redis.nodes: got 3; Redis would change from a 6-node cluster to a 3-node "
                               "cluster: ")


def test_cluster_growth_passes_with_a_warning_giving_the_add_node_commands() -> None:
    findings = check(prod("large"), redis(3, "cluster"))
    assert findings.problems == ()
    (warning,) = findings.warnings
    assert warning.startswith("Redis grows from 3 to 6 cluster nodes: redis-node-3, redis-node-4, redis-node-5 "
                              "start empty, and the creation Job (`kubectl -n banyan logs job/redis-cluster-create`)")
    for step in ("redis-cli --cluster add-node <new ip>:6379 <member ip>:6379", "--cluster-slave",
                 "3 masters x 1 replicas",
                 "redis-cli --cluster rebalance <member ip>:6379 --cluster-use-empty-masters"):
        assert step in warning


@pytest.mark.parametrize(("tier", "replicas", "mode"), [("small", 1, "standalone"), ("medium", 3, "cluster"),
                                                       ("large", 6, "cluster")])
def test_the_same_shape_passes(tier: str, replicas: int, mode: str) -> None:
    assert check(prod(tier), redis(replicas, mode)) == check(prod(tier), KubernetesSnapshot(NS))


# ---- PostgreSQL -----------------------------------------------------------------------------------------------

def test_a_smaller_postgres_volume_is_refused_and_growth_passes() -> None:
    live = KubernetesSnapshot(NS, postgres=LivePostgres("postgres", 3, 50 * GIB))
    message = one_problem(prod("small"), live)
    assert message.startswith('banyan:tier: got "small"; PostgreSQL\'s volumes would shrink from 50Gi to 10Gi per '
                              "instance (the small tier's size): CloudNativePG refuses to shrink a volume")
    assert check(prod("large"), live).problems == ()
    assert check(prod("small", postgres__storage_gib=50), live).problems == ()


# ---- the snapshot from the API server's objects ---------------------------------------------------------------

def rendered_objects(tier: str) -> dict[str, dict[str, Any]]:
    """The stack's own stateful objects, as the provider would send them."""
    rendering = render_stack("prod", set={"tier": tier})
    found = {}
    for resource in rendering.resources:
        inputs = resource.plain_inputs
        kind = inputs.get("kind") if isinstance(inputs, dict) else None
        if kind in ("RabbitmqCluster", "Cluster") or (kind == "StatefulSet"
                                                       and inputs["metadata"]["name"] == "redis-node"):
            found[str(kind)] = inputs
    return found


@pytest.mark.parametrize("tier", ["small", "medium", "large"])
def test_the_stacks_own_objects_read_back_as_its_shape(tier: str) -> None:
    """What the components render is what the snapshot parser understands (annotation, storage, counts)."""
    objects = rendered_objects(tier)
    spec = prod(tier)
    live = KubernetesSnapshot.from_objects(NS, rabbitmq_cluster=objects["RabbitmqCluster"],
                                           redis_statefulset=objects["StatefulSet"],
                                           postgres_cluster=objects["Cluster"])
    assert live.rabbitmq == LiveRabbitMQ("rabbitmq", spec.rabbitmq.nodes, spec.rabbitmq.storage_gib * GIB)
    assert live.redis == LiveRedis("redis-node", spec.redis.nodes, spec.redis.mode, ("data",))
    assert live.postgres == LivePostgres("postgres", 1 + spec.postgres.replicas, spec.postgres.storage_gib * GIB)
    assert check(spec, live).problems == ()
    # A StatefulSet made before the mode annotation is judged by its ports: cluster nodes name the bus port so.
    ports = {p["name"] for c in objects["StatefulSet"]["spec"]["template"]["spec"]["containers"] for p in c["ports"]}
    assert (REDIS_BUS_PORT_NAME in ports) is (spec.redis.mode == "cluster")


def test_medium_objects_refuse_a_small_spec() -> None:
    objects = rendered_objects("medium")
    live = KubernetesSnapshot.from_objects(NS, rabbitmq_cluster=objects["RabbitmqCluster"],
                                           redis_statefulset=objects["StatefulSet"],
                                           postgres_cluster=objects["Cluster"])
    keys = [(p.key, p.allowed.split(" would")[0]) for p in check(prod("small"), live).problems]
    assert keys == [("banyan:tier", "RabbitMQ"), ("banyan:tier", "RabbitMQ's volumes"), ("banyan:tier", "Redis"),
                    ("banyan:tier", "PostgreSQL's volumes")]


def test_turning_monitoring_on_or_off_warns_that_the_redis_pods_roll() -> None:
    """The live StatefulSet's pods carry the exporter or not (read from the stack's own objects): a preview that
    adds or removes it says the nodes restart, one at a time; one that keeps it says nothing."""
    def live(**sets: Any) -> KubernetesSnapshot:
        (obj,) = [r.plain_inputs for r in render_stack("prod", set={"tier": "medium", **sets}).resources
                  if r.type == "kubernetes:apps/v1:StatefulSet" and r.plain_inputs["metadata"]["name"] == "redis-node"]
        return KubernetesSnapshot.from_objects(NS, redis_statefulset=obj)

    on = {"monitoring.enabled": True, "monitoring.mtail_image": "banyan-local/mtail:bookworm-3.0.0"}
    without, with_ = live(), live(**on)
    assert without.redis is not None and with_.redis is not None
    assert (without.redis.exporter, with_.redis.exporter) == (False, True)
    (adding,) = check(prod("medium", **on), without).warnings
    assert "adds the Redis exporter sidecar" in adding and "restarts its 3 node(s) one pod at a time" in adding
    assert "Nginx pods roll too" in adding
    (removing,) = check(prod("medium"), with_).warnings
    assert "removes the Redis exporter sidecar" in removing
    assert check(prod("medium", **on), with_).warnings == ()
    assert check(prod("medium"), without).warnings == ()


def test_a_redis_statefulset_without_the_annotation_is_judged_by_its_ports() -> None:
    def sts(replicas: int, ports: list[str], annotations: dict[str, str] | None = None) -> dict[str, Any]:
        return {"metadata": {"name": "redis-node", "annotations": annotations or {}},
                "spec": {"replicas": replicas, "template": {"spec": {"containers": [
                    {"name": "redis", "ports": [{"name": n, "containerPort": 1} for n in ports]}]}}}}

    def mode(obj: dict[str, Any]) -> str | None:
        live = KubernetesSnapshot.from_objects(NS, redis_statefulset=obj).redis
        return None if live is None else live.mode

    assert mode(sts(1, ["redis"])) == "standalone"
    assert mode(sts(1, ["redis", "cluster-bus"])) == "cluster"
    assert mode(sts(3, ["redis"])) == "cluster"
    assert mode(sts(3, ["redis", "cluster-bus"], {REDIS_MODE_ANNOTATION: "standalone"})) == "standalone"


def test_the_operators_statefulset_and_its_conditions_are_read() -> None:
    cluster = {"metadata": {"name": "rabbitmq"}, "spec": {"replicas": 1, "persistence": {"storage": "20Gi"}},
               "status": {"conditions": [
                   {"type": "AllReplicasReady", "status": "True"},
                   {"type": "ReconcileSuccess", "status": "False", "reason": "UnsupportedOperation",
                    "message": "Cluster Scale down not supported; tried to scale cluster from 3 nodes to 1 nodes"}]}}
    operator_sts = {"metadata": {"name": "rabbitmq-server"}, "spec": {
        "replicas": 3, "volumeClaimTemplates": [{"metadata": {"name": "persistence"}}]}}
    live = KubernetesSnapshot.from_objects(NS, rabbitmq_cluster=cluster, rabbitmq_statefulset=operator_sts).rabbitmq
    assert live == LiveRabbitMQ("rabbitmq", 1, 20 * GIB, "rabbitmq-server", 3,
                                "UnsupportedOperation: Cluster Scale down not supported; tried to scale cluster "
                                "from 3 nodes to 1 nodes", ("persistence",))
    assert live.nodes == 3
    # The CRD's defaults: one replica, 10Gi.
    bare = KubernetesSnapshot.from_objects(NS, rabbitmq_cluster={"metadata": {"name": "r"}, "spec": {}}).rabbitmq
    assert bare is not None and (bare.replicas, bare.storage_bytes) == (1, 10 * GIB)


@pytest.mark.parametrize("bad", [
    {"metadata": {"name": "rabbitmq"}, "spec": {"replicas": "three"}},
    {"metadata": {"name": "rabbitmq"}, "spec": {"replicas": -1}},
    {"metadata": {"name": "rabbitmq"}, "spec": {"replicas": True}},
    {"spec": {"replicas": 3}},
    {"metadata": {"name": "rabbitmq"}, "spec": ["not", "a", "mapping"]},
])
def test_an_object_not_in_its_kinds_form_is_a_value_error(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        KubernetesSnapshot.from_objects(NS, rabbitmq_cluster=bad)


@pytest.mark.parametrize(("text", "n_bytes"), [("5Gi", 5 * GIB), ("500Mi", 500 * 2**20), ("1G", 10**9),
                                               ("1.5Gi", 3 * 2**29), ("1073741824", GIB), ("0Gi", 0)])
def test_storage_quantities(text: str, n_bytes: int) -> None:
    assert quantity_bytes(text) == n_bytes


@pytest.mark.parametrize("text", ["", "Gi", "5 Gi", "5GB", "-1Gi", "1e3"])
def test_what_is_not_a_quantity(text: str) -> None:
    with pytest.raises(ValueError):
        quantity_bytes(text)


# ---- the waits `up` gets --------------------------------------------------------------------------------------

def test_up_waits_for_the_operators_own_conditions() -> None:
    objects = rendered_objects("large")
    rabbit_wait = objects["RabbitmqCluster"]["metadata"]["annotations"]["pulumi.com/waitFor"]
    # pulumi-kubernetes (metadata.ReadyCondition): a JSON list of expressions means all of them.
    assert json.loads(rabbit_wait) == ["condition=AllReplicasReady", "condition=ReconcileSuccess"]
    cnpg = objects["Cluster"]["metadata"]["annotations"]
    assert cnpg["pulumi.com/waitFor"] == "condition=Ready"
    # Five minutes for each of the large tier's four instances, which CloudNativePG creates one after another.
    assert cnpg["pulumi.com/timeoutSeconds"] == "1200"
    small = rendered_objects("small")["Cluster"]["metadata"]["annotations"]
    assert small["pulumi.com/timeoutSeconds"] == "600", "never under pulumi-kubernetes' own default"


# ---- the I/O layer: kubeconfig, skips -------------------------------------------------------------------------

def kubeconfig(tmp_path: Path, *, user: dict[str, Any] | None = None, server: str = "https://127.0.0.1:6443",
               cluster: dict[str, Any] | None = None, current: str | None = "one") -> Path:
    doc = {
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "c1", "cluster": {"server": server, **(cluster or {})}}],
        "users": [{"name": "u1", "user": user or {"token": "secret-token"}}],
        "contexts": [{"name": "one", "context": {"cluster": "c1", "user": "u1"}},
                     {"name": "two", "context": {"cluster": "c1", "user": "nobody"}}],
    }
    if current:
        doc["current-context"] = current
    path = tmp_path / "kubeconfig"
    path.write_text(json.dumps(doc))
    return path


def kube(kubeconfig: str | None, context: str | None = None) -> KubernetesSpec:
    """banyan:kubernetes with these two keys (a path, or the kubeconfig document itself)."""
    return prod("small").kubernetes.model_copy(update={"kubeconfig": kubeconfig, "context": context})


def test_the_kubeconfig_is_found_as_the_provider_finds_it(tmp_path: Path) -> None:
    path = kubeconfig(tmp_path)
    home = tmp_path / "home"
    (home / ".kube").mkdir(parents=True)
    (home / ".kube" / "config").write_text(path.read_text())
    # banyan:kubernetes.kubeconfig first, then KUBECONFIG, then ~/.kube/config.
    assert io.locate_cluster(kube(str(path)), {"KUBECONFIG": "/nonexistent"}).token == "secret-token"
    assert io.locate_cluster(kube(None), {"KUBECONFIG": str(path)}).where.startswith(
        f"https://127.0.0.1:6443 (context one of {path} (KUBECONFIG))")
    assert io.locate_cluster(kube(None), {"HOME": str(home)}).server == "https://127.0.0.1:6443"
    # The kubeconfig itself as the value, as pulumi-kubernetes accepts it.
    document = yaml.safe_dump(json.loads(path.read_text()), sort_keys=False)
    assert io.locate_cluster(kube(document), {}).token == "secret-token"
    with pytest.raises(io.ClusterUnreadableError, match="no kubeconfig"):
        io.locate_cluster(kube(None), {"HOME": str(tmp_path / "nobody")})
    with pytest.raises(io.ClusterUnreadableError, match=r"reads one file, not a list"):
        io.locate_cluster(kube(None), {"KUBECONFIG": f"{path}:{path}"})


def test_credentials_from_files_data_and_token_files(tmp_path: Path) -> None:
    (tmp_path / "ca.crt").write_text("CA PEM")
    (tmp_path / "token").write_text("from-file\n")
    pem = base64.b64encode(b"CERT PEM").decode()
    path = kubeconfig(tmp_path, cluster={"certificate-authority": "ca.crt", "tls-server-name": "api.internal"},
                      user={"client-certificate-data": pem, "client-key-data": pem, "tokenFile": "token"})
    creds = io.locate_cluster(kube(str(path)), {})
    assert (creds.ca_pem, creds.cert_pem, creds.key_pem, creds.token, creds.tls_server_name) == (
        "CA PEM", "CERT PEM", "CERT PEM", "from-file", "api.internal")


@pytest.mark.parametrize(("path_kw", "context", "error"), [
    ({"current": None}, None, "no current-context and banyan:kubernetes.context is unset"),
    ({}, "three", "the kubeconfig has no context 'three'"),
    ({}, "two", "the kubeconfig has no user 'nobody'"),
    ({"server": "http://127.0.0.1:8080"}, None, "server http://127.0.0.1:8080 is not https://"),
    ({"user": {"auth-provider": {"name": "gcp"}}}, None, r"auth-provider \(gcp\) is not supported here"),
    ({"user": {"client-certificate": "missing.crt"}}, None, "client-certificate .*missing.crt cannot be read"),
    ({"user": {"client-key-data": "%%%"}}, None, "client-key-data is not base64 PEM"),
])
def test_a_kubeconfig_that_cannot_be_used_says_why(tmp_path: Path, path_kw: dict[str, Any], context: str | None,
                                                    error: str) -> None:
    path = kubeconfig(tmp_path, **path_kw)
    with pytest.raises(io.ClusterUnreadableError, match=error):
        io.locate_cluster(kube(str(path), context), {})


@pytest.mark.parametrize("text", ["not: [valid", "- a list", "just words"])
def test_a_kubeconfig_that_is_not_one_says_so(tmp_path: Path, text: str) -> None:
    path = tmp_path / "kubeconfig"
    path.write_text(text)
    with pytest.raises(io.ClusterUnreadableError):
        io.locate_cluster(kube(str(path)), {})


def test_an_exec_credential_plugin_is_run_non_interactively(tmp_path: Path) -> None:
    plugin = tmp_path / "get-token"
    plugin.write_text(f"#!{sys.executable}\nimport json, os, sys\n"
                      "info = json.loads(os.environ['KUBERNETES_EXEC_INFO'])\n"
                      "assert info['spec']['interactive'] is False and sys.argv[1:] == ['--cluster', 'prod']\n"
                      "print(json.dumps({'kind': 'ExecCredential', 'status': {'token': os.environ['REGION']}}))\n")
    plugin.chmod(plugin.stat().st_mode | stat.S_IXUSR)
    path = kubeconfig(tmp_path, user={"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": str(plugin),
                                               "args": ["--cluster", "prod"],
                                               "env": [{"name": "REGION", "value": "token-from-plugin"}]}})
    assert io.locate_cluster(kube(str(path)), dict(os.environ)).token == "token-from-plugin"
    failing = kubeconfig(tmp_path, user={"exec": {"command": "false"}})
    with pytest.raises(io.ClusterUnreadableError, match="the exec credential plugin false failed"):
        io.locate_cluster(kube(str(failing)), dict(os.environ))


@pytest.fixture
def warned(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    logged: list[str] = []
    monkeypatch.setattr(pulumi.log, "warn", lambda msg, *_, **__: logged.append(msg))
    return logged


def test_no_cluster_answering_is_a_warning_not_a_traceback(tmp_path: Path, warned: list[str]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Nothing listens on the port any more: the connection is refused.
    path = kubeconfig(tmp_path, server=f"https://127.0.0.1:{port}")
    io.check_cluster(prod("small", kubernetes__kubeconfig=str(path)), {})
    (warning,) = warned
    assert warning.startswith(f"preflight skipped: the Kubernetes cluster at https://127.0.0.1:{port} (context one "
                              f"of {path} (banyan:kubernetes.kubeconfig)) could not be read within 5s per request (")
    assert warning.endswith("RabbitMQ node-count decreases, Redis node-count or mode changes and volume shrinks "
                            "were not checked against the live objects")


def test_a_missing_kubeconfig_is_a_warning(tmp_path: Path, warned: list[str]) -> None:
    io.check_cluster(prod("small", kubernetes__kubeconfig=str(tmp_path / "absent")), {})
    (warning,) = warned
    assert warning.startswith("preflight skipped: banyan:kubernetes.kubeconfig is ")
    assert "neither a file nor a kubeconfig document" in warning


def test_the_program_reads_the_cluster_only_outside_mocks(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(io, "check_cluster", lambda spec, environ: calls.append(spec.target))
    monkeypatch.setattr(io, "check_engine", lambda spec, raw, environ: calls.append(spec.target))
    monkeypatch.setattr(settings, "get_monitor", lambda: None)  # as under `pulumi preview`
    io.run(prod("small"), {})
    io.run(prod("small", preflight=False), {})
    assert calls == ["kubernetes"]


def test_under_mocks_only_an_injected_snapshot_of_this_target_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*_: object, **__: object) -> None:
        raise AssertionError("the mocks run read a real cluster")

    monkeypatch.setattr(io, "check_cluster", forbidden)
    monkeypatch.setattr(io, "locate_cluster", forbidden)
    # A Docker engine's snapshot says nothing about a cluster.
    rendering = render_stack("prod", set={"tier": "small"}, engine=EngineSnapshot())
    assert rendering.of_type("kubernetes:apps/v1:StatefulSet")
    assert not any("preflight" in w for w in rendering.warnings)
    with pytest.raises(io.PreflightError, match=r"shrink from 3 nodes to 1"):
        render_stack("prod", set={"tier": "small"}, cluster=rabbit(3))


def test_preflight_false_says_the_cluster_was_not_checked() -> None:
    rendering = render_stack("prod", set={"tier": "small", "preflight": False}, cluster=rabbit(3))
    assert rendering.resources
    not_checked = "banyan:preflight is false: the Kubernetes cluster's live objects were not checked"
    assert ("info", not_checked) in rendering.log
