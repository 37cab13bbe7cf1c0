"""The Kubernetes RabbitMQ cluster under Pulumi's mocks: a RabbitmqCluster that validates against the operator's
CRD, the operator's pinned Helm release, the admin as a Secret only, stable identity across tiers."""

from __future__ import annotations

from functools import cache
from typing import Any

import pytest

from components.rabbitmq import RabbitMQCluster
from components.rabbitmq import kubernetes as rk
from components.rabbitmq.component import TYPE
from components.rabbitmq.config import render_operator_config, render_rabbitmq_conf
from components.target import KubernetesTarget
from model.spec import PlatformSpec, RabbitMQSpec
from testkit import RecordedResource, Rendering, Secret, mock_secret_value, unwrap, walk_plain
from testkit.component import Scaffold, render_component
from testkit.k8s_check import builtin_problems, crd_problems
from tests.helpers import shared_file, spec_for, waited_on, waited_on_output

CLUSTER = "kubernetes:rabbitmq.com/v1beta1:RabbitmqCluster"
USER = "kubernetes:rabbitmq.com/v1beta1:User"
PERMISSION = "kubernetes:rabbitmq.com/v1beta1:Permission"
RELEASE = "kubernetes:helm.sh/v3:Release"
SECRET = "kubernetes:core/v1:Secret"
PDB = "kubernetes:policy/v1:PodDisruptionBudget"
NAMESPACE = "kubernetes:core/v1:Namespace"
TIERS = ("small", "medium", "large")


def render(spec: PlatformSpec) -> tuple[Rendering, dict[str, Any]]:
    def build(s: Scaffold) -> dict[str, Any]:
        cluster = RabbitMQCluster("platform-rabbitmq", spec.rabbitmq, credentials=s.secrets.rabbitmq, target=s.target,
                                  opts=s.child)
        return {"hosts": cluster.hosts, "port": cluster.port, "management_port": cluster.management_port,
                "management_url": cluster.management_url, "wait_on": waited_on(cluster)}

    return render_component(spec, build)


@cache
def rendered(tier: str = "large", **sets: Any) -> tuple[PlatformSpec, Rendering, dict[str, Any]]:
    spec = spec_for("prod", tier=tier, **sets)
    rendering, seen = render(spec)
    return spec, rendering, seen


def the_cluster(rendering: Rendering) -> RecordedResource:
    (cluster,) = rendering.of_type(CLUSTER)
    return cluster


def cluster_body(rendering: Rendering) -> dict[str, Any]:
    body: dict[str, Any] = the_cluster(rendering).plain_inputs["spec"]
    return body


def conf_pairs(conf: str) -> dict[str, str]:
    pairs: list[tuple[str, str]] = []
    for line in conf.splitlines():
        if line.strip() and not line.startswith("#"):
            key, sep, value = line.partition(" = ")
            assert sep, f"not a `key = value` line: {line!r}"
            pairs.append((key, value))
    keys = [k for k, _ in pairs]
    assert len(keys) == len(set(keys)), f"duplicate keys: {keys}"
    return dict(pairs)


def mq(**update: Any) -> RabbitMQSpec:
    return spec_for("prod").rabbitmq.model_copy(update=update)


def _secret_named(rendering: Rendering, name: str) -> RecordedResource:
    (found,) = [s for s in rendering.of_type(SECRET) if s.plain_inputs["metadata"]["name"] == name]
    return found


def default_user_secret(rendering: Rendering) -> RecordedResource:
    return _secret_named(rendering, "rabbitmq-default-user")


def app_secret(rendering: Rendering) -> RecordedResource:
    return _secret_named(rendering, "rabbitmq-banyan-app-credentials")


# ---- the custom resource ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("tier", TIERS)
def test_the_cluster_validates_against_the_operator_crd(tier: str) -> None:
    crd_dir = shared_file("schemas", "crds")
    _, rendering, _ = rendered(tier)
    assert crd_problems(the_cluster(rendering).inputs, crd_dir) == []


def test_the_crd_check_can_fail() -> None:
    crd_dir = shared_file("schemas", "crds")
    _, rendering, _ = rendered("medium")
    inputs = unwrap(the_cluster(rendering).inputs)
    inputs["spec"]["persistence"]["storageClass"] = "fast"  # the field is storageClassName
    inputs["spec"]["replicas"] = "3"
    problems = crd_problems(inputs, crd_dir)
    assert any("storageClass" in p for p in problems) and any(p.startswith("spec.replicas") for p in problems)


@pytest.mark.parametrize("tier", TIERS)
def test_built_in_objects_validate_strictly(tier: str) -> None:
    _, rendering, _ = rendered(tier)
    builtins = [r for r in rendering.resources
                if r.custom and r.type.startswith("kubernetes:") and r.type not in (CLUSTER, RELEASE, USER, PERMISSION)]
    assert {r.type for r in builtins} >= {SECRET, PDB}
    assert {r.name: builtin_problems(r.inputs) for r in builtins if builtin_problems(r.inputs)} == {}


@pytest.mark.parametrize(("tier", "nodes"), [("small", 1), ("medium", 3), ("large", 5)])
def test_replicas_resources_image_and_storage_follow_the_tier(tier: str, nodes: int) -> None:
    spec, rendering, _ = rendered(tier)
    mq_spec = spec.rabbitmq
    body = cluster_body(rendering)
    assert body["replicas"] == mq_spec.nodes == nodes
    assert body["image"] == mq_spec.image
    limits, requests = mq_spec.resources.limits, mq_spec.resources.requests
    assert body["resources"] == {
        "limits": {"cpu": f"{limits.cpu_millis}m", "memory": f"{limits.memory_mib}Mi"},
        "requests": {"cpu": f"{requests.cpu_millis}m", "memory": f"{requests.memory_mib}Mi"},
    }
    assert body["persistence"] == {"storage": f"{mq_spec.storage_gib}Gi"}


def test_the_cluster_is_named_for_its_part_in_the_stack_namespace() -> None:
    spec, rendering, _ = rendered()
    metadata = the_cluster(rendering).plain_inputs["metadata"]
    assert metadata["name"] == spec.rabbitmq.name == "rabbitmq"
    assert metadata["namespace"] == spec.kubernetes.namespace
    assert the_cluster(rendering).inputs["apiVersion"] == "rabbitmq.com/v1beta1"
    assert the_cluster(rendering).inputs["kind"] == "RabbitmqCluster"


def test_storage_class_comes_from_the_stack() -> None:
    _, rendering, _ = rendered("medium", kubernetes__storage_class="fast-ssd")
    assert cluster_body(rendering)["persistence"] == {"storage": "20Gi", "storageClassName": "fast-ssd"}


def test_without_persistence_the_operator_gets_storage_zero() -> None:
    crd_dir = shared_file("schemas", "crds")
    _, rendering, _ = rendered("medium", rabbitmq__persistence=False, kubernetes__storage_class="fast-ssd")
    assert cluster_body(rendering)["persistence"] == {"storage": "0Gi"}
    assert crd_problems(the_cluster(rendering).inputs, crd_dir) == []


# ---- configuration -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("tier", TIERS)
def test_additional_config_carries_the_docker_broker_settings(tier: str) -> None:
    spec, rendering, _ = rendered(tier)
    conf = cluster_body(rendering)["rabbitmq"]["additionalConfig"]
    assert conf == render_operator_config(spec.rabbitmq)
    operator = conf_pairs(conf)
    docker = conf_pairs(render_rabbitmq_conf(spec.rabbitmq))
    # Every key is one the Docker file also sets (and the server tests boot), with the same value.
    assert {k: docker.get(k) for k in operator} == operator
    assert operator["loopback_users.guest"] == "true"
    assert operator["default_queue_type"] == "quorum"
    # 4.3 (the default) has no partition handling left to set (Khepri); older series get the Docker file's.
    assert "cluster_partition_handling" not in operator
    assert operator["vm_memory_high_watermark.absolute"] == f"{spec.rabbitmq.memory_high_watermark_mib}MiB"
    assert "disk_free_limit.absolute" in operator
    # Peer discovery and listeners are the operator's; the admin comes from the Secret, never from this text.
    assert not [k for k in operator if k.startswith(("cluster_formation", "listeners", "management.",
                                                     "default_user", "default_pass"))]


def test_quorum_default_only_where_the_version_reads_it() -> None:
    assert "default_queue_type" not in conf_pairs(render_operator_config(mq(default_queue_type="classic")))
    assert "default_queue_type" not in conf_pairs(render_operator_config(mq(version="3.12")))
    assert conf_pairs(render_operator_config(mq(version="4.1")))["default_queue_type"] == "quorum"


@pytest.mark.parametrize(
    ("image", "version", "legacy"),
    [
        ("rabbitmq:3.13.7-management-alpine", "3.13", True),
        ("rabbitmq:4.1.3-management", "4.1", True),
        ("rabbitmq:4.2.3-management", "4.2", True),
        ("rabbitmq:4.2.4-management", "4.2", False),
        ("rabbitmq:4.2-management", "4.2", True),
        ("rabbitmq:4.3.2-management-alpine@sha256:" + "0" * 64, "4.3", False),
        ("registry.example.com:5000/rabbitmq:4.3", "4.3", False),
    ],
)
def test_old_brokers_get_the_legacy_startup_probe(image: str, version: str, legacy: bool) -> None:
    annotations = rk.cluster_annotations(mq(image=image, version=version))
    assert (annotations.get(rk.LEGACY_STARTUP_PROBE) == "true") is legacy
    assert annotations["pulumi.com/waitFor"] == '["condition=AllReplicasReady", "condition=ReconcileSuccess"]'


def test_the_default_image_uses_the_operators_http_startup_probe() -> None:
    """The pinned broker (4.3.5) serves /api/health/checks/reached-target-cluster-size: no legacy probe."""
    spec, rendering, _ = rendered()
    assert spec.rabbitmq.image.startswith("rabbitmq:4.3.")
    assert rk.LEGACY_STARTUP_PROBE not in the_cluster(rendering).plain_inputs["metadata"]["annotations"]


def test_an_older_broker_still_gets_the_legacy_probe() -> None:
    _, rendering, _ = rendered(rabbitmq__image="rabbitmq:4.2.3-management", rabbitmq__version="\"4.2\"")
    assert the_cluster(rendering).plain_inputs["metadata"]["annotations"][rk.LEGACY_STARTUP_PROBE] == "true"


def test_the_operator_enables_every_feature_flag_after_an_upgrade() -> None:
    _, rendering, _ = rendered()
    assert cluster_body(rendering)["autoEnableAllFeatureFlags"] is True


def test_ports_other_than_the_operators_are_refused() -> None:
    spec = spec_for("prod")
    namespace: Any = None
    target = KubernetesTarget(spec=spec, namespace=namespace, parent=namespace, name="platform")
    with pytest.raises(ValueError, match="5672/15672"):
        rk.cluster_spec(spec.rabbitmq.model_copy(update={"port": 5673}), target)


# ---- credentials -------------------------------------------------------------------------------------------------

def test_the_admin_comes_from_a_secret_the_cluster_points_at() -> None:
    spec, rendering, _ = rendered()
    secret = default_user_secret(rendering)
    assert cluster_body(rendering)["secretBackend"] == {"externalSecret": {"name": "rabbitmq-default-user"}}
    data = secret.inputs["stringData"]
    assert isinstance(data, Secret) or all(isinstance(v, Secret) for v in data.values())
    password = mock_secret_value("secrets-rabbitmq-admin")
    plain = unwrap(data)
    assert plain["default_user.conf"] == f"default_user = banyan-admin\ndefault_pass = {password}\n"
    assert plain["username"] == "banyan-admin" and plain["password"] == password
    assert plain["host"] == f"rabbitmq.{spec.kubernetes.namespace}.svc" and plain["port"] == "5672"
    assert secret.urn in the_cluster(rendering).depends_on, "pods mount the Secret: it must exist first"


@pytest.mark.parametrize("tier", TIERS)
def test_no_secret_value_in_any_plain_input(tier: str) -> None:
    _, rendering, _ = rendered(tier)
    leaks = [(r.name, path) for r in rendering.resources for path, value in walk_plain(r.inputs)
             if isinstance(value, str) and "mocksecret" in value]
    assert leaks == []
    conf = conf_pairs(cluster_body(rendering)["rabbitmq"]["additionalConfig"])
    assert [k for k in conf if "guest" in k] == ["loopback_users.guest"]
    assert "guest" not in conf.values()


def test_the_operator_keeps_its_own_erlang_cookie() -> None:
    _, rendering, _ = rendered()
    names = [r.inputs["metadata"]["name"] for r in rendering.of_type(SECRET)]
    assert "rabbitmq-erlang-cookie" not in names, "the operator would adopt it and fight Pulumi over its labels"


# ---- pods: labels, spread, disruption ----------------------------------------------------------------------------

def test_pods_carry_the_selector_labels_and_spread_over_nodes() -> None:
    spec, rendering, _ = rendered()
    selector = {"app.kubernetes.io/name": "rabbitmq", "app.kubernetes.io/instance": spec.stack}
    template = cluster_body(rendering)["override"]["statefulSet"]["spec"]["template"]
    # The operator labels pods app.kubernetes.io/name=<cluster name>; the override adds the instance label.
    assert template["metadata"]["labels"] == selector
    assert selector["app.kubernetes.io/name"] == the_cluster(rendering).plain_inputs["metadata"]["name"]
    (spread,) = template["spec"]["topologySpreadConstraints"]
    assert spread["topologyKey"] == "kubernetes.io/hostname"
    assert spread["whenUnsatisfiable"] == "ScheduleAnyway"
    assert spread["labelSelector"]["matchLabels"] == selector
    assert template["spec"]["containers"] == []
    (pdb,) = rendering.of_type(PDB)
    assert pdb.inputs["spec"]["selector"]["matchLabels"] == selector
    assert pdb.inputs["spec"]["maxUnavailable"] == 1


def test_the_override_leaves_the_statefulset_identity_to_the_operator() -> None:
    for tier in TIERS:
        _, rendering, _ = rendered(tier)
        sts = cluster_body(rendering)["override"]["statefulSet"]
        assert set(sts) == {"spec"} and set(sts["spec"]) == {"template"}, "selector/serviceName/PVCs are immutable"


# ---- the operator ------------------------------------------------------------------------------------------------

def test_the_operator_is_installed_from_the_pinned_chart_and_the_cluster_waits_for_it() -> None:
    _, rendering, _ = rendered()
    (release,) = rendering.of_type(RELEASE)
    inputs = release.plain_inputs
    assert inputs["chart"] == "oci://registry-1.docker.io/cloudpirates/rabbitmq-cluster-operator"
    assert inputs["version"] == rk.CHART_VERSION == "0.6.5"
    assert inputs["namespace"] == rk.OPERATOR_NAMESPACE == "rabbitmq-system"
    assert inputs["createNamespace"] is True
    assert inputs["name"] == "rabbitmq-cluster-operator"
    # The Messaging Topology Operator makes the applications' user (chart 0.6.5 values.yaml: msgTopologyOperator.
    # enabled; its webhook certificate is the chart's own without cert-manager).
    assert inputs["values"] == {"msgTopologyOperator": {"enabled": True}}
    assert release.urn in the_cluster(rendering).depends_on
    assert release.retain_on_delete, "uninstalling the operator could take its CRD and every cluster along"
    assert release.protect


def test_no_operator_when_the_cluster_runs_one() -> None:
    _, rendering, _ = rendered("large", kubernetes__install_operators=False)
    assert rendering.of_type(RELEASE) == []
    cluster = the_cluster(rendering)
    (namespace,) = rendering.of_type(NAMESPACE)
    secret = default_user_secret(rendering)
    assert set(cluster.depends_on) == {namespace.urn, secret.urn}
    # The cluster's own Topology Operator makes the user: it waits for the cluster only.
    (user,) = rendering.of_type(USER)
    assert set(user.depends_on) == {namespace.urn, cluster.urn, app_secret(rendering).urn}


# ---- lifecycle ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("protect", [True, False])
def test_the_cluster_and_its_secret_are_retained_and_protected_as_the_stack_says(protect: bool) -> None:
    _, rendering, _ = rendered("medium", protect=protect)
    for resource in (the_cluster(rendering), default_user_secret(rendering)):
        assert resource.retain_on_delete
        assert resource.protect is protect
    (namespace,) = rendering.of_type(NAMESPACE)
    assert namespace.urn in the_cluster(rendering).depends_on


def test_a_tier_change_replaces_nothing() -> None:
    """A RabbitmqCluster is replaced only when its identity changes; the operator recreates the StatefulSet only
    for its selector, serviceName or claim templates (which it owns). Storage may grow (the operator expands the
    claims); the operator cannot shrink volumes nor scale down, so both only grow from tier to tier."""
    identities, storage, replicas = set(), [], []
    for tier in TIERS:
        _, rendering, _ = rendered(tier)
        cluster = the_cluster(rendering)
        metadata = cluster.plain_inputs["metadata"]
        body = cluster_body(rendering)
        identities.add((cluster.inputs["apiVersion"], cluster.inputs["kind"], metadata["name"],
                        metadata["namespace"], cluster.name, body["persistence"].get("storageClassName"),
                        str(body["secretBackend"]), str(body["override"]["statefulSet"]["spec"]["template"])))
        storage.append(int(body["persistence"]["storage"].removesuffix("Gi")))
        replicas.append(body["replicas"])
        assert cluster.replace_on_changes == () and not cluster.delete_before_replace
    assert len(identities) == 1
    assert storage == sorted(storage) and replicas == sorted(replicas)


def test_rendering_twice_gives_identical_inputs() -> None:
    spec = spec_for("prod", tier="medium")
    first, _ = render(spec)
    second, _ = render(spec)
    def inputs(rendering: Rendering) -> dict[tuple[str, str], dict[str, Any]]:
        return {(r.type, r.name): r.inputs for r in rendering.resources}

    assert inputs(first) == inputs(second)


# ---- outputs -----------------------------------------------------------------------------------------------------

def test_outputs_name_the_client_service() -> None:
    _, rendering, seen = rendered()
    (component,) = rendering.of_type(TYPE)
    assert seen["hosts"] == component.outputs["hosts"] == ["rabbitmq"]
    assert seen["port"] == component.outputs["port"] == 5672
    assert seen["management_port"] == component.outputs["management_port"] == 15672
    assert seen["management_url"] is None and component.outputs.get("management_url") is None
    # The cluster, then the applications' User and Permission (ready once RabbitMQ has them).
    assert len(seen["wait_on"]) == len(waited_on_output(component)) == 3
    for child in rendering.children(component):
        assert child.name.startswith("platform-rabbitmq-")


# ---- the applications' user (Messaging Topology Operator) ---------------------------------------------------------

@pytest.mark.parametrize("tier", TIERS)
def test_the_app_user_and_its_permission_validate_against_the_topology_operator_crds(tier: str) -> None:
    crd_dir = shared_file("schemas", "crds")
    _, rendering, _ = rendered(tier)
    (user,) = rendering.of_type(USER)
    (permission,) = rendering.of_type(PERMISSION)
    assert crd_problems(user.inputs, crd_dir) == []
    assert crd_problems(permission.inputs, crd_dir) == []
    assert builtin_problems(app_secret(rendering).inputs) == []


def test_the_apps_user_has_its_vhost_only_no_tags_and_its_own_generated_password() -> None:
    _, rendering, _ = rendered()
    cluster = the_cluster(rendering)
    (release,) = rendering.of_type(RELEASE)
    (user,) = rendering.of_type(USER)
    (permission,) = rendering.of_type(PERMISSION)
    secret = app_secret(rendering)
    body = user.plain_inputs["spec"]
    # No tags: AMQP only; the management UI and HTTP API refuse it.
    assert body == {"rabbitmqClusterReference": {"name": "rabbitmq"},
                    "importCredentialsSecret": {"name": "rabbitmq-banyan-app-credentials"}, "tags": []}
    assert permission.plain_inputs["spec"] == {
        "rabbitmqClusterReference": {"name": "rabbitmq"},
        "userReference": {"name": user.plain_inputs["metadata"]["name"]},
        "vhost": "/",
        "permissions": {"configure": ".*", "write": ".*", "read": ".*"},
    }
    # The keys the operator imports (users.rabbitmq.com: `username`, and `password` when there is no
    # passwordHash), as secrets; the password is the generated rabbitmq-app one, not the admin's.
    data = secret.inputs["stringData"]
    assert isinstance(data, Secret) or all(isinstance(v, Secret) for v in data.values())
    assert unwrap(data) == {"username": "banyan-app", "password": mock_secret_value("secrets-rabbitmq-app")}
    assert unwrap(data)["password"] != mock_secret_value("secrets-rabbitmq-admin")
    # Made once the operator, its CRDs and the cluster exist; `pulumi up` waits until the operator says Ready.
    assert {cluster.urn, release.urn, secret.urn} <= set(user.depends_on)
    assert user.urn in permission.depends_on
    for obj in (user, permission):
        assert obj.plain_inputs["metadata"]["annotations"] == {"pulumi.com/waitFor": '["condition=Ready"]'}
        assert obj.plain_inputs["metadata"]["namespace"] == cluster.plain_inputs["metadata"]["namespace"]
    # The operator refuses a change of a Permission's user or vhost: such a change replaces it.
    assert set(permission.replace_on_changes) == {"spec.vhost", "spec.userReference"}
    assert permission.delete_before_replace


def test_the_user_helper_takes_any_user_tags_and_permissions() -> None:
    """The same helper makes other users (a read-only `monitoring` user for a metrics scraper)."""
    spec = mq()
    assert rk.user_spec(spec, "banyan-monitoring", ("monitoring",))["tags"] == ["monitoring"]
    read_only = rk.VhostPermissions(configure="^$", write="^$", read=".*")
    assert rk.permission_spec(spec, "banyan-monitoring", read_only)["permissions"] == {
        "configure": "^$", "write": "^$", "read": ".*"}
    with pytest.raises(ValueError, match=r"unknown tags.*monitoring"):
        rk.user_spec(spec, "x", ("monitor",))
    with pytest.raises(ValueError, match="DNS label"):
        rk.user_object_name(spec, "Not_A_Name")
