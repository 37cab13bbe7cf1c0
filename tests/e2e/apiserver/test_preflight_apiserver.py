"""The Kubernetes preflight (infra/preflight.py) against a real kube-apiserver (scripts/kube-apiserver).

The medium tier's stateful objects, as the stack renders them, are applied for real into the stack's namespace
(the operators' CRDs from ../shared/schemas/crds; no operator or controller runs here, so nothing else appears).
Then the program's own read, through the kubeconfig the way the provider finds it and over HTTPS with its client
certificate, is run for a small-tier spec (refused, naming every key, old and new values) and for the medium tier
itself (passes). Without the binaries the tests skip (run `scripts/kube-apiserver build`); with
BANYAN_REQUIRE_APISERVER=1 (CI) they fail instead.
"""

from __future__ import annotations

import base64
import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml

from infra import preflight
from model.preflight_kubernetes import GIB, LivePostgres, LiveRabbitMQ, LiveRedis
from model.spec import PlatformSpec
from testkit import render_stack
from tests.e2e.apiserver.apiserver import (
    REPO_ROOT,
    REQUIRE_ENV,
    ApiServer,
    ApiServerUnavailableError,
    Client,
    Response,
    required,
)
from tests.helpers import spec_for

FIELD_MANAGER = "banyan-e2e-preflight"
CRD_DIR = REPO_ROOT.parent / "shared" / "schemas" / "crds"
CRDS = ("rabbitmq.com_rabbitmqclusters.yaml", "postgresql.cnpg.io_clusters.yaml")
# What the medium tier deploys that a later `up` is judged against.
STATEFUL = {("Namespace", None), ("RabbitmqCluster", None), ("Cluster", None), ("StatefulSet", "redis-node")}


def _stateful(tier: str) -> list[dict[str, Any]]:
    rendering = render_stack("prod", set={"tier": tier})
    found = []
    for resource in rendering.resources:
        manifest = resource.plain_inputs
        if not resource.type.startswith("kubernetes:") or not isinstance(manifest, dict) or "kind" not in manifest:
            continue
        kind, name = manifest["kind"], manifest["metadata"]["name"]
        if (kind, None) in STATEFUL or (kind, name) in STATEFUL:
            found.append(copy.deepcopy(manifest))
    # The Namespace before what lives in it.
    return sorted(found, key=lambda m: m["kind"] != "Namespace")


def _accepted(obj: dict[str, Any], response: Response) -> None:
    assert response.ok, f"{obj['kind']}/{obj['metadata']['name']}: {response.message}"


@pytest.fixture(scope="module")
def server() -> Iterator[ApiServer]:
    api = ApiServer()
    try:
        api.start()
    except ApiServerUnavailableError as err:
        api.stop()
        if required():
            pytest.fail(f"{REQUIRE_ENV}=1 but {err}")
        pytest.skip(str(err))
    try:
        yield api
    finally:
        api.stop()


@pytest.fixture(scope="module")
def medium(server: ApiServer) -> Client:
    """The server with the operators' CRDs and the medium tier's stateful objects applied for real."""
    if not CRD_DIR.is_dir():
        pytest.skip(f"{CRD_DIR} is absent (CI lays ../shared beside the clone): no CRDs for the operators")
    client = server.client()
    client.install_crds([CRD_DIR / name for name in CRDS], field_manager=FIELD_MANAGER)
    objects = _stateful("medium")
    assert {o["kind"] for o in objects} == {kind for kind, _ in STATEFUL}, objects
    for obj in objects:
        _accepted(obj, client.apply(obj, field_manager=FIELD_MANAGER, dry_run=False))
    return client


def spec(server: ApiServer, tier: str, **sets: Any) -> PlatformSpec:
    """The prod stack at `tier`, its kubeconfig the test server's (banyan:kubernetes.kubeconfig)."""
    return spec_for("prod", tier=tier, kubernetes__kubeconfig=str(server.kubeconfig.path), **sets)


@pytest.fixture
def warned(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    logged: list[str] = []
    monkeypatch.setattr(pulumi.log, "warn", lambda msg, *_, **__: logged.append(msg))
    return logged


def test_the_live_medium_objects_are_read_as_the_medium_shape(server: ApiServer, medium: Client) -> None:
    small = spec(server, "small")
    creds = preflight.locate_cluster(small.kubernetes, {})
    assert creds.server == server.kubeconfig.server and creds.cert_pem and creds.key_pem
    live = preflight.read_cluster(small, creds)
    # No operator runs here: the RabbitmqCluster has no StatefulSet of its own yet.
    assert live.rabbitmq == LiveRabbitMQ("rabbitmq", 3, 20 * GIB)
    assert live.redis == LiveRedis("redis-node", 3, "cluster", ("data",))
    assert live.postgres == LivePostgres("postgres", 3, 50 * GIB)


def test_a_small_tier_over_the_live_medium_objects_is_refused(server: ApiServer, medium: Client,
                                                              warned: list[str]) -> None:
    with pytest.raises(preflight.PreflightError) as caught:
        preflight.check_cluster(spec(server, "small"), {})
    message = str(caught.value)
    assert message.startswith(f"the Kubernetes cluster at {server.kubeconfig.server} (context banyan-e2e of "
                              f"{server.kubeconfig.path} (banyan:kubernetes.kubeconfig)), namespace banyan, already "
                              "holds what this stack would break (4 problems); nothing was deployed:\n")
    for line in ('  - banyan:tier: got "small"; RabbitMQ would shrink from 3 nodes to 1 (the small tier\'s count)',
                 "rabbitmq.com/pauseReconciliation=true",
                 '  - banyan:tier: got "small"; RabbitMQ\'s volumes would shrink from 20Gi to 5Gi per node',
                 '  - banyan:tier: got "small"; Redis would change from a 3-node cluster to 1 node (standalone)',
                 "`kubectl -n banyan delete pvc data-redis-node-0 data-redis-node-1 data-redis-node-2`",
                 '  - banyan:tier: got "small"; PostgreSQL\'s volumes would shrink from 50Gi to 10Gi per instance',
                 'README, "Safe transitions on Kubernetes"'):
        assert line in message
    assert warned == []


def test_the_same_tier_and_growth_pass(server: ApiServer, medium: Client, warned: list[str]) -> None:
    preflight.check_cluster(spec(server, "medium"), {})
    assert warned == []
    preflight.check_cluster(spec(server, "large"), {})
    (warning,) = warned
    assert warning.startswith("Redis grows from 3 to 6 cluster nodes: redis-node-3, redis-node-4, redis-node-5")


def test_what_the_operator_runs_and_reports_is_judged_too(server: ApiServer, medium: Client,
                                                          warned: list[str]) -> None:
    """The RabbitmqCluster lowered by hand while the operator's StatefulSet still runs 3 nodes is still refused;
    the operator's ReconcileSuccess=False reaches the preview as a warning with its message."""
    cluster = next(o for o in _stateful("medium") if o["kind"] == "RabbitmqCluster")
    lowered = copy.deepcopy(cluster)
    lowered["spec"]["replicas"] = 1
    operator_sts = {
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "rabbitmq-server", "namespace": "banyan"},
        "spec": {"replicas": 3, "serviceName": "rabbitmq-nodes",
                 "selector": {"matchLabels": {"app.kubernetes.io/name": "rabbitmq"}},
                 "template": {"metadata": {"labels": {"app.kubernetes.io/name": "rabbitmq"}},
                              "spec": {"containers": [{"name": "rabbitmq", "image": "rabbitmq:3.13.7"}]}},
                 "volumeClaimTemplates": [{"metadata": {"name": "persistence"},
                                           "spec": {"accessModes": ["ReadWriteOnce"],
                                                    "resources": {"requests": {"storage": "20Gi"}}}}]}}
    refused = {"type": "ReconcileSuccess", "status": "False", "reason": "UnsupportedOperation",
               "message": "Cluster Scale down not supported; tried to scale cluster from 3 nodes to 1 nodes"}
    status = {"apiVersion": cluster["apiVersion"], "kind": "RabbitmqCluster",
              "metadata": {"name": "rabbitmq", "namespace": "banyan"}, "status": {"conditions": [refused]}}
    try:
        _accepted(lowered, medium.apply(lowered, field_manager="kubectl-by-hand", dry_run=False))
        _accepted(operator_sts, medium.apply(operator_sts, field_manager="operator", dry_run=False))
        # The status subresource, as the operator writes it.
        status_path = medium.object_path(status) + "/status"
        _accepted(status, medium.request("PATCH", status_path, query={"fieldManager": "operator", "force": "true"},
                                         body=status, content_type="application/apply-patch+yaml"))
        with pytest.raises(preflight.PreflightError, match=r"RabbitMQ would shrink from 3 nodes to 1"):
            preflight.check_cluster(spec(server, "small", redis__nodes=3, rabbitmq__storage_gib=20,
                                         postgres__storage_gib=50), {})
        preflight.check_cluster(spec(server, "medium"), {})
        assert warned == ["RabbitmqCluster rabbitmq: the operator reports ReconcileSuccess=False "
                          "(UnsupportedOperation: Cluster Scale down not supported; tried to scale cluster from 3 "
                          "nodes to 1 nodes); `pulumi up` waits for it to be True"]
    finally:
        medium.delete(operator_sts)
        _accepted(cluster, medium.apply(cluster, field_manager=FIELD_MANAGER, dry_run=False))
        medium.request("PATCH", medium.object_path(status) + "/status",
                       body=[{"op": "remove", "path": "/status"}], content_type="application/json-patch+json")


def test_a_restore_over_the_live_cluster_is_refused_with_the_procedure(server: ApiServer, medium: Client,
                                                                        warned: list[str]) -> None:
    """The live Cluster was bootstrapped by initdb: a restore setting would never bootstrap it again."""
    with pytest.raises(preflight.PreflightError, match=r"kubectl -n banyan delete cluster postgres"):
        preflight.check_cluster(spec(server, "medium", postgres__restore__enabled=True,
                                     postgres__backup__server_name="postgres-2"), {})


def test_embedded_credentials_and_an_explicit_context_read_the_same(server: ApiServer, medium: Client,
                                                                    tmp_path: Path) -> None:
    kc = server.kubeconfig
    doc = {"apiVersion": "v1", "kind": "Config", "current-context": "elsewhere",
           "clusters": [{"name": "e2e", "cluster": {
               "server": kc.server, "certificate-authority-data": base64.b64encode(kc.ca_file.read_bytes()).decode()}}],
           "users": [{"name": "admin", "user": {
               "client-certificate-data": base64.b64encode(kc.cert_file.read_bytes()).decode(),
               "client-key-data": base64.b64encode(kc.key_file.read_bytes()).decode()}}],
           "contexts": [{"name": "elsewhere", "context": {"cluster": "nowhere", "user": "admin"}},
                        {"name": "e2e", "context": {"cluster": "e2e", "user": "admin"}}]}
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(doc))
    small = spec_for("prod", tier="small", kubernetes__kubeconfig=str(path), kubernetes__context="e2e")
    live = preflight.read_cluster(small, preflight.locate_cluster(small.kubernetes, {}))
    assert live.rabbitmq is not None and live.rabbitmq.replicas == 3


def test_a_wrong_certificate_authority_is_a_warning(server: ApiServer, medium: Client, tmp_path: Path,
                                                    warned: list[str]) -> None:
    kc = server.kubeconfig
    doc = yaml.safe_load(kc.path.read_text())
    # The client's own certificate is not the CA that signed the server's.
    doc["clusters"][0]["cluster"]["certificate-authority"] = str(kc.cert_file)
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(doc))
    preflight.check_cluster(spec_for("prod", tier="small", kubernetes__kubeconfig=str(path)), {})
    (warning,) = warned
    assert warning.startswith(f"preflight skipped: the Kubernetes cluster at {kc.server}")
    assert "CERTIFICATE_VERIFY_FAILED" in warning
