"""The whole prod stack (Kubernetes target) rendered from Pulumi.prod.yaml under mocks, for every tier."""

from __future__ import annotations

from functools import cache
from ipaddress import ip_address, ip_network
from typing import Any

import pytest

from model.tiers import NGINX_UNPRIVILEGED_PORT, TIERS
from testkit import RecordedResource, Rendering, mock_secret_value, render_stack, unwrap, walk_plain
from testkit.k8s_check import KUBERNETES_VERSION, builtin_problems, crd_problems
from tests.helpers import shared_file

TIERS_ = ("small", "medium", "large")
CUSTOM_GROUPS = ("postgresql.cnpg.io", "rabbitmq.com", "barmancloud.cnpg.io")
HELM = "kubernetes:helm.sh/v3:Release"
PROVIDER = "pulumi:providers:kubernetes"


@cache
def rendered(tier: str) -> Rendering:
    return render_stack("prod", set={"tier": tier})


def objects(r: Rendering) -> list[RecordedResource]:
    """Every Kubernetes object the stack applies (not Helm releases or the provider)."""
    return [x for x in r.resources if x.type.startswith("kubernetes:") and x.type != HELM]


def is_custom(x: RecordedResource) -> bool:
    return x.type.split(":")[1].split("/")[0] in CUSTOM_GROUPS


def kind(r: Rendering, kind_: str) -> list[dict[str, Any]]:
    return [unwrap(x.inputs) for x in objects(r) if x.inputs.get("kind") == kind_]


def named(r: Rendering, kind_: str, name: str) -> dict[str, Any]:
    found = [o for o in kind(r, kind_) if o["metadata"]["name"] == name]
    assert len(found) == 1, f"{len(found)} {kind_} named {name}"
    return found[0]


def pod_label_sets(r: Rendering) -> dict[str, dict[str, str]]:
    """The labels of every pod the stack makes run, by owner: templates, and what operators are told."""
    pods: dict[str, dict[str, str]] = {}
    for k in ("Deployment", "StatefulSet"):
        for o in kind(r, k):
            pods[f"{k}/{o['metadata']['name']}"] = o["spec"]["template"]["metadata"]["labels"]
    for o in kind(r, "Job"):
        pods[f"Job/{o['metadata']['name']}"] = o["spec"]["template"]["metadata"]["labels"]
    # Operator-made pods: what we ask for, plus the labels CloudNativePG always sets itself.
    for o in kind(r, "Cluster"):
        pods[f"Cluster/{o['metadata']['name']}"] = {**o["spec"]["inheritedMetadata"]["labels"],
                                                    "cnpg.io/cluster": o["metadata"]["name"],
                                                    "cnpg.io/podRole": "instance"}
        # The Jobs that initialise or join an instance: the cluster's label and the job's role.
        pods[f"Job/{o['metadata']['name']}-join"] = {**o["spec"]["inheritedMetadata"]["labels"],
                                                     "cnpg.io/cluster": o["metadata"]["name"],
                                                     "cnpg.io/jobRole": "join"}
    for o in kind(r, "Pooler"):
        pods[f"Pooler/{o['metadata']['name']}"] = {**o["spec"]["template"]["metadata"]["labels"],
                                                   "cnpg.io/cluster": o["spec"]["cluster"]["name"],
                                                   "cnpg.io/poolerName": o["metadata"]["name"],
                                                   "cnpg.io/podRole": "pooler"}
    for o in kind(r, "RabbitmqCluster"):
        override = o["spec"]["override"]["statefulSet"]["spec"]["template"]["metadata"]["labels"]
        pods[f"RabbitmqCluster/{o['metadata']['name']}"] = override
    return pods


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


@pytest.mark.parametrize("tier", TIERS_)
def test_every_builtin_object_validates_strictly(tier: str) -> None:
    builtins = [x for x in objects(rendered(tier)) if not is_custom(x)]
    assert len(builtins) > 20
    problems = {f"{x.inputs['kind']} {x.name}": builtin_problems(x.inputs) for x in builtins}
    assert {k: v for k, v in problems.items() if v} == {}, f"Kubernetes {KUBERNETES_VERSION}"


@pytest.mark.parametrize("tier", TIERS_)
def test_every_operator_custom_resource_validates_against_its_crd(tier: str) -> None:
    crd_dir = shared_file("schemas", "crds")
    customs = [x for x in objects(rendered(tier)) if is_custom(x)]
    assert {x.inputs["kind"] for x in customs} >= {"Cluster", "RabbitmqCluster"}
    problems = {f"{x.inputs['kind']} {x.name}": crd_problems(x.inputs, crd_dir) for x in customs}
    assert {k: v for k, v in problems.items() if v} == {}


def test_the_validators_reject_a_broken_object() -> None:
    r = rendered("medium")
    deployment = next(x for x in objects(r) if x.inputs.get("kind") == "Deployment")
    broken = {**deployment.inputs, "spec": {**deployment.inputs["spec"], "replica": 3}}
    assert builtin_problems(broken)
    cluster = next(x for x in objects(r) if x.inputs.get("kind") == "Cluster")
    bad_cr = {**cluster.inputs, "spec": {**cluster.inputs["spec"], "instance": 3}}
    assert crd_problems(bad_cr, shared_file("schemas", "crds"))


@pytest.mark.parametrize("tier", TIERS_)
def test_counts_autoscalers_and_budgets_follow_the_tier(tier: str) -> None:
    r, preset = rendered(tier), TIERS[tier]
    hpas = {o["metadata"]["name"]: o["spec"] for o in kind(r, "HorizontalPodAutoscaler")}
    assert (hpas["api-gateway"]["minReplicas"], hpas["api-gateway"]["maxReplicas"]) == (
        preset.gateway_instances, preset.gateway_max)
    for svc in ("user-service", "order-service"):
        assert (hpas[svc]["minReplicas"], hpas[svc]["maxReplicas"]) == (preset.service_instances, preset.service_max)
    for spec in hpas.values():
        targets = {m["resource"]["name"]: m["resource"]["target"]["averageUtilization"] for m in spec["metrics"]}
        assert targets == {"cpu": 70, "memory": 80}
    for name in hpas:
        deployment = named(r, "Deployment", name)
        assert "replicas" not in deployment["spec"], f"{name}: replicas must be left to the autoscaler"
        limits = deployment["spec"]["template"]["spec"]["containers"][0]["resources"]
        res = preset.resources["gateway" if name == "api-gateway" else "service"]
        assert limits["limits"] == {"cpu": f"{res.limits.cpu_millis}m", "memory": f"{res.limits.memory_mib}Mi"}
        assert limits["requests"] == {"cpu": f"{res.requests.cpu_millis}m",
                                      "memory": f"{res.requests.memory_mib}Mi"}
    pdbs = {o["metadata"]["name"]: o["spec"] for o in kind(r, "PodDisruptionBudget")}
    for name, spec in hpas.items():
        assert (name in pdbs) == (spec["minReplicas"] > 1)
    for pdb in pdbs.values():
        assert pdb.get("maxUnavailable") == 1 or pdb.get("unhealthyPodEvictionPolicy") == "AlwaysAllow"
        assert "minAvailable" not in pdb or pdb["minAvailable"] < 1
    (cluster,) = kind(r, "Cluster")
    assert cluster["spec"]["instances"] == 1 + preset.postgres_replicas
    (mq,) = kind(r, "RabbitmqCluster")
    assert mq["spec"]["replicas"] == preset.rabbitmq_nodes
    redis = [o for o in kind(r, "StatefulSet") if o["metadata"]["name"].startswith("redis")]
    assert [o["spec"]["replicas"] for o in redis] == [preset.redis_nodes]


@pytest.mark.parametrize("tier", TIERS_)
def test_selectors_match_pod_labels_and_every_service_selects_pods(tier: str) -> None:
    r = rendered(tier)
    for k in ("Deployment", "StatefulSet"):
        for o in kind(r, k):
            assert selects(o["spec"]["selector"]["matchLabels"], o["spec"]["template"]["metadata"]["labels"])
    pods = pod_label_sets(r)
    for svc in kind(r, "Service"):
        selector = svc["spec"].get("selector") or {}
        owners = [owner for owner, labels in pods.items() if selects(selector, labels)]
        assert owners, f"Service {svc['metadata']['name']} selects no pods ({selector})"


NS = "banyan"
# One end of a connection: (namespace, pod labels, address); a pod has the first two, a host outside the third.
Endpoint = tuple[str | None, dict[str, str] | None, str | None]


def _selects_pod(selector: dict[str, Any], labels: dict[str, str] | None) -> bool:
    """A policy's or peer's podSelector (matchLabels only, as the stack writes them); `{}` selects every pod."""
    return labels is not None and all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items())


def _peer_matches(peer: dict[str, Any], policy_ns: str, other: Endpoint) -> bool:
    ns, labels, address = other
    if "ipBlock" in peer:
        # Addresses outside the pod network only: pods are matched by selectors, never by ipBlock.
        return address is not None and ip_address(address) in ip_network(peer["ipBlock"]["cidr"])
    if "namespaceSelector" in peer:
        wanted = peer["namespaceSelector"].get("matchLabels") or {}
        in_ns = ns is not None and wanted.get("kubernetes.io/metadata.name", ns) == ns
        return in_ns and _selects_pod(peer.get("podSelector") or {}, labels)
    return ns == policy_ns and _selects_pod(peer["podSelector"], labels)


def admitted(r: Rendering, direction: str, pod: Endpoint, other: Endpoint, port: int, protocol: str) -> bool:
    """Whether the stack's NetworkPolicies let `pod` (in the stack's namespace) receive from (Ingress) or open to
    (Egress) `other` on port/protocol. Pods outside the namespace are governed by no policy of the stack."""
    ns, labels, _ = pod
    if ns != NS:
        return True
    applying = [p for p in kind(r, "NetworkPolicy") if direction in p["spec"]["policyTypes"]
                and _selects_pod(p["spec"]["podSelector"], labels)]
    if not applying:
        return True
    for policy in applying:
        for rule in policy["spec"].get(direction.lower()) or []:
            ports = rule.get("ports")
            if ports and not any(p.get("protocol", "TCP") == protocol
                                 and p["port"] <= port <= p.get("endPort", p["port"]) for p in ports):
                continue
            peers = rule.get("from" if direction == "Ingress" else "to")
            if not peers or any(_peer_matches(peer, NS, other) for peer in peers):
                return True
    return False


def connects(r: Rendering, src: Endpoint, dst: Endpoint, port: int, protocol: str = "TCP") -> bool:
    """Both ends must agree: the source's egress and the destination's ingress."""
    return admitted(r, "Egress", src, dst, port, protocol) and admitted(r, "Ingress", dst, src, port, protocol)


def in_ns(labels: dict[str, str]) -> Endpoint:
    return (NS, labels, None)


INTERNET: Endpoint = (None, None, "203.0.113.7")
API_SERVER: Endpoint = (None, None, "172.18.0.2")  # the `kubernetes` Service's endpoint, as policies see it
KUBE_DNS: Endpoint = ("kube-system", {"k8s-app": "kube-dns"}, None)
CNPG_OPERATOR: Endpoint = ("cnpg-system", {"app.kubernetes.io/name": "cloudnative-pg",
                                           "app.kubernetes.io/instance": "cnpg"}, None)
RABBITMQ_OPERATOR: Endpoint = ("rabbitmq-system", {"app.kubernetes.io/name": "rabbitmq-cluster-operator",
                                                   "app.kubernetes.io/component": "rabbitmq-operator"}, None)
# The Messaging Topology Operator's pods as the CloudPirates chart labels them (rmqmto.labels: the chart's name,
# component messaging-topology-operator) and as the upstream manifest does (config/manager/manager.yaml).
TOPOLOGY_OPERATOR_CHART: Endpoint = ("rabbitmq-system", {"app.kubernetes.io/name": "rabbitmq-cluster-operator",
                                                         "app.kubernetes.io/component": "messaging-topology-operator",
                                                         "app.kubernetes.io/part-of": "rabbitmq"}, None)
TOPOLOGY_OPERATOR_UPSTREAM: Endpoint = ("rabbitmq-system", {"app.kubernetes.io/name": "messaging-topology-operator",
                                                            "control-plane": "controller-manager"}, None)
PROMETHEUS: Endpoint = ("monitoring", {"app.kubernetes.io/name": "prometheus", "prometheus": "k8s"}, None)


def platform_paths(r: Rendering) -> list[tuple[Endpoint, Endpoint, int, str, bool]]:
    """(source, destination, port, protocol, admitted): the platform's paths, and the ones next to them."""
    pods = {owner: in_ns(labels) for owner, labels in pod_label_sets(r).items()}
    gw, usr = pods["Deployment/api-gateway"], pods["Deployment/user-service"]
    ord_ = pods["Deployment/order-service"]
    nginx, pg = pods["Deployment/nginx"], pods["Cluster/postgres"]
    pooler, job = pods["Pooler/postgres-pooler"], pods["Job/postgres-join"]
    mq, rd = pods["RabbitmqCluster/rabbitmq"], pods["StatefulSet/redis-node"]
    create = pods.get("Job/redis-cluster-create")
    other_in_cnpg = ("cnpg-system", {"app.kubernetes.io/name": "something-else"}, None)
    other_in_rabbitmq_ns = ("rabbitmq-system", {"app.kubernetes.io/name": "something-else"}, None)
    other_in_monitoring = ("monitoring", {"app.kubernetes.io/name": "grafana"}, None)
    prometheus_elsewhere = ("default", dict(PROMETHEUS[1] or {}), None)
    dns_elsewhere = ("default", {"k8s-app": "kube-dns"}, None)
    other_in_kube_system = ("kube-system", {"k8s-app": "metrics-server"}, None)
    table = [
        # Nginx's pods listen on an unprivileged port (they run as non-root); the Service maps the public one.
        (INTERNET, nginx, NGINX_UNPRIVILEGED_PORT, "TCP", True),
        (INTERNET, nginx, 80, "TCP", False),
        (INTERNET, gw, 3003, "TCP", False),
        (INTERNET, pg, 5432, "TCP", False),
        (INTERNET, mq, 5672, "TCP", False),
        (INTERNET, rd, 6379, "TCP", False),
        (nginx, gw, 3003, "TCP", True),
        (nginx, pg, 5432, "TCP", False),
        (nginx, rd, 6379, "TCP", False),
        (nginx, mq, 5672, "TCP", False),
        (nginx, usr, 3000, "TCP", False),
        (gw, usr, 3000, "TCP", True),
        (gw, mq, 5672, "TCP", True),
        (gw, rd, 6379, "TCP", True),
        (gw, pg, 5432, "TCP", False),  # the gateway is no database client by default
        (gw, nginx, NGINX_UNPRIVILEGED_PORT, "TCP", False),  # open to anyone outside; the gateway has no egress there
        (usr, pg, 5432, "TCP", True),
        (usr, pg, 8000, "TCP", False),  # CloudNativePG's status API is for the operator and the instances
        (usr, pg, 9187, "TCP", False),
        (usr, pooler, 5432, "TCP", True),
        (nginx, pooler, 5432, "TCP", False),
        (pooler, pg, 5432, "TCP", True),
        (pooler, rd, 6379, "TCP", False),
        (usr, mq, 5672, "TCP", True),
        (usr, mq, 15672, "TCP", False),
        (usr, rd, 6379, "TCP", True),
        (usr, gw, 3003, "TCP", False),
        (usr, ord_, 3000, "TCP", False),  # services talk over the bus, not to each other
        (usr, rd, 16379, "TCP", False),
        (pg, pg, 5432, "TCP", True),  # streaming replication
        (pg, pg, 8000, "TCP", True),  # the instance manager's failsafe pings
        (job, pg, 5432, "TCP", True),  # a joining replica copies the primary
        (pg, rd, 6379, "TCP", False),
        (pg, mq, 5672, "TCP", False),
        (rd, rd, 6379, "TCP", True),
        (rd, rd, 16379, "TCP", True),
        (rd, pg, 5432, "TCP", False),
        (mq, mq, 4369, "TCP", True),
        (mq, mq, 25672, "TCP", True),
        (mq, mq, 35680, "TCP", True),
        (mq, pg, 5432, "TCP", False),
        (usr, mq, 25672, "TCP", False),
        # The operators, by namespace and by their pods' labels.
        (CNPG_OPERATOR, pg, 8000, "TCP", True),
        (CNPG_OPERATOR, pg, 5432, "TCP", True),
        (other_in_cnpg, pg, 8000, "TCP", False),
        (other_in_cnpg, pg, 5432, "TCP", False),
        (RABBITMQ_OPERATOR, mq, 15672, "TCP", True),
        (RABBITMQ_OPERATOR, mq, 5672, "TCP", False),
        (other_in_rabbitmq_ns, mq, 15672, "TCP", False),
        # The Messaging Topology Operator makes the applications' user through the management API.
        (TOPOLOGY_OPERATOR_CHART, mq, 15672, "TCP", True),
        (TOPOLOGY_OPERATOR_UPSTREAM, mq, 15672, "TCP", True),
        (TOPOLOGY_OPERATOR_UPSTREAM, mq, 5672, "TCP", False),
        ((("default", dict(TOPOLOGY_OPERATOR_UPSTREAM[1] or {}), None)), mq, 15672, "TCP", False),
        ((("other-namespace", {"app.kubernetes.io/name": "x"}, None)), pg, 5432, "TCP", False),
        # Metrics: the monitoring namespace's scrapers only.
        (PROMETHEUS, pg, 9187, "TCP", True),
        (PROMETHEUS, pooler, 9127, "TCP", True),
        (PROMETHEUS, mq, 15692, "TCP", True),
        (PROMETHEUS, pg, 5432, "TCP", False),
        (PROMETHEUS, mq, 5672, "TCP", False),
        (other_in_monitoring, pg, 9187, "TCP", False),
        (prometheus_elsewhere, pg, 9187, "TCP", False),
        (usr, mq, 15692, "TCP", False),
        # Egress: the cluster DNS over UDP and TCP, for every pod; nothing else in kube-system.
        *((src, KUBE_DNS, 53, proto, True) for src in (nginx, gw, usr, pg, pooler, job, mq, rd)
          for proto in ("UDP", "TCP")),
        (gw, dns_elsewhere, 53, "UDP", False),
        (gw, other_in_kube_system, 53, "UDP", False),
        (gw, other_in_kube_system, 443, "TCP", False),
        (gw, KUBE_DNS, 9153, "TCP", False),
        # The API server, for the operators' pods only.
        (pg, API_SERVER, 6443, "TCP", True),
        (job, API_SERVER, 6443, "TCP", True),
        (pooler, API_SERVER, 443, "TCP", True),
        (mq, API_SERVER, 443, "TCP", True),
        (pg, API_SERVER, 22, "TCP", False),
        (nginx, API_SERVER, 6443, "TCP", False),
        (gw, API_SERVER, 443, "TCP", False),
        (usr, API_SERVER, 443, "TCP", False),
        (rd, API_SERVER, 443, "TCP", False),
        # Nothing leaves for the internet, nor for other namespaces' pods.
        (nginx, INTERNET, 443, "TCP", False),
        (gw, INTERNET, 443, "TCP", False),
        (usr, INTERNET, 80, "TCP", False),
        (rd, INTERNET, 443, "TCP", False),
        (pg, INTERNET, 5432, "TCP", False),
        (usr, PROMETHEUS, 9090, "TCP", False),
        (pg, CNPG_OPERATOR, 9443, "TCP", False),
    ]
    if create is not None:  # Redis Cluster: the creation Job reaches the nodes' client port, and DNS, only
        table += [(create, rd, 6379, "TCP", True), (create, rd, 16379, "TCP", False),
                  (create, KUBE_DNS, 53, "UDP", True), (create, pg, 5432, "TCP", False),
                  (create, API_SERVER, 443, "TCP", False)]
    return table


def _name(end: Endpoint) -> str:
    ns, labels, address = end
    return address or f"{ns}/{(labels or {}).get('app.kubernetes.io/name') or labels}"


@pytest.mark.parametrize("tier", TIERS_)
def test_network_policies_admit_exactly_the_platform_paths(tier: str) -> None:
    r = rendered(tier)
    wrong = [(_name(src), _name(dst), port, proto, want) for src, dst, port, proto, want in platform_paths(r)
             if connects(r, src, dst, port, proto) != want]
    assert wrong == []


def test_every_pod_is_under_default_deny_both_ways() -> None:
    r = rendered("large")
    denies = {tuple(p["spec"]["policyTypes"]) for p in kind(r, "NetworkPolicy")
              if p["spec"]["podSelector"] == {} and not p["spec"].get("ingress") and not p["spec"].get("egress")}
    assert denies == {("Ingress",), ("Egress",)}


def test_the_api_server_addresses_narrow_its_egress() -> None:
    """Unset, the API server's ports are open to any address (its address is the cluster's); once named, only
    those addresses, and a pod that may reach the API server reaches nothing else on those ports."""
    default = rendered("medium")
    pg = in_ns(pod_label_sets(default)["Cluster/postgres"])
    assert connects(default, pg, INTERNET, 443)
    # Backups (on in prod) reach the object store on 443 too: narrowed to its addresses as well.
    narrowed = render_stack("prod", set={"tier": "medium", "kubernetes.api_server_cidrs": ["172.18.0.2/32"],
                                         "postgres.backup.object_store_cidrs": ["198.51.100.0/24"]})
    assert connects(narrowed, pg, API_SERVER, 6443)
    assert connects(narrowed, pg, (None, None, "198.51.100.9"), 443)
    assert not connects(narrowed, pg, INTERNET, 443)
    assert not connects(narrowed, pg, (None, None, "172.18.0.3"), 6443)


def test_dns_and_monitoring_peers_follow_the_config() -> None:
    r = render_stack("prod", set={"tier": "medium", "kubernetes.dns_namespace": "dns",
                                  "kubernetes.dns_pod_labels": {"app": "coredns"},
                                  "monitoring.namespace": "observability", "monitoring.pod_labels": {}})
    pods = pod_label_sets(r)
    gw, pg = in_ns(pods["Deployment/api-gateway"]), in_ns(pods["Cluster/postgres"])
    assert connects(r, gw, ("dns", {"app": "coredns"}, None), 53, "UDP")
    assert not connects(r, gw, KUBE_DNS, 53, "UDP")
    assert connects(r, ("observability", {"app.kubernetes.io/name": "vmagent"}, None), pg, 9187)
    assert not connects(r, PROMETHEUS, pg, 9187)


@pytest.mark.parametrize("tier", TIERS_)
def test_no_secret_value_in_any_plain_input(tier: str) -> None:
    r = rendered(tier)
    secrets = [mock_secret_value(x.name) for x in r.resources if x.type.startswith("random:")]
    assert len(secrets) >= 5
    leaks = [f"{x.type} {x.name}: {path}" for x in r.resources for path, v in walk_plain(x.inputs)
             if isinstance(v, str) and any(s in v for s in secrets)]
    assert leaks == []
    env_secrets = [o for o in kind(r, "Secret") if o["metadata"]["name"] == "user-service-env"]
    assert env_secrets and any(s in env_secrets[0]["stringData"]["DATABASE_URL"] for s in secrets)


def _fingerprint(r: Rendering) -> list[tuple[Any, ...]]:
    return sorted((x.type, x.name, x.parent or "", repr(unwrap(x.inputs)), x.protect, x.retain_on_delete)
                  for x in r.resources)


def test_rendering_twice_gives_identical_inputs() -> None:
    assert _fingerprint(render_stack("prod", set={"tier": "medium"})) == _fingerprint(
        render_stack("prod", set={"tier": "medium"}))


STATEFUL_KINDS = ("Cluster", "RabbitmqCluster", "StatefulSet", "Namespace", "PersistentVolumeClaim")


def immutable_fields(obj: dict[str, Any], ignored: tuple[str, ...] = ()) -> dict[str, Any]:
    """What the API server (or the operator) will not change in place: a change means replacement. Fields
    the resource's ignore_changes lists keep their created value (the engine diffs them as unchanged)."""
    spec = obj.get("spec", {})
    if obj["kind"] == "StatefulSet":
        return {k: spec.get(k) for k in ("serviceName", "selector", "volumeClaimTemplates", "podManagementPolicy")
                if f"spec.{k}" not in ignored}
    if obj["kind"] == "Cluster":
        return {"storageClass": spec.get("storage", {}).get("storageClass")}
    if obj["kind"] == "RabbitmqCluster":
        return {"storageClassName": (spec.get("persistence") or {}).get("storageClassName")}
    return {}


def stateful_objects(r: Rendering) -> list[RecordedResource]:
    """The objects that hold data. A Patch (the operators' namespaces' Pod Security labels) holds nothing:
    deleting it removes only the fields it applied."""
    return [x for x in objects(r) if x.inputs.get("kind") in STATEFUL_KINDS and not x.type.endswith("Patch")]


def test_the_operators_namespaces_enforce_restricted_by_a_patch_after_their_release() -> None:
    r = rendered("medium")
    patches = r.of_type("kubernetes:core/v1:NamespacePatch")
    assert sorted(unwrap(p.inputs)["metadata"]["name"] for p in patches) == ["cnpg-system", "rabbitmq-system"]
    releases = {x.urn: x for x in r.of_type(HELM)}
    for patch in patches:
        labels = unwrap(patch.inputs)["metadata"]["labels"]
        assert labels["pod-security.kubernetes.io/enforce"] == "restricted", labels
        assert labels["pod-security.kubernetes.io/enforce-version"] != "latest"
        (release,) = [releases[u] for u in patch.depends_on if u in releases]
        assert unwrap(release.inputs)["namespace"] == unwrap(patch.inputs)["metadata"]["name"]
    off = render_stack("prod", set={"tier": "medium", "kubernetes.install_operators": False})
    assert off.of_type("kubernetes:core/v1:NamespacePatch") == []


@pytest.mark.parametrize(("before", "after"), [("small", "medium"), ("medium", "large"), ("large", "small")])
def test_changing_the_tier_replaces_no_stateful_resource(before: str, after: str) -> None:
    def stateful(r: Rendering) -> dict[tuple[str, str], RecordedResource]:
        return {(x.type, x.name): x for x in stateful_objects(r)}

    sa, sb = stateful(rendered(before)), stateful(rendered(after))
    assert sa.keys() == sb.keys(), "a tier change must not add or remove a stateful object"
    for key, x in sa.items():
        ix, iy = unwrap(x.inputs), unwrap(sb[key].inputs)
        assert x.retain_on_delete and sb[key].retain_on_delete, key
        assert ix["metadata"]["name"] == iy["metadata"]["name"], key
        assert x.ignore_changes == sb[key].ignore_changes, key
        assert immutable_fields(ix, x.ignore_changes) == immutable_fields(iy, x.ignore_changes), key


def test_prod_protects_stateful_resources_and_the_namespace() -> None:
    r = rendered("large")
    stateful = stateful_objects(r)
    assert stateful
    assert all(x.protect and x.retain_on_delete for x in stateful), [x.name for x in stateful if not x.protect]


def test_operators_installed_by_default_and_optional() -> None:
    # CloudNativePG, the Barman Cloud plugin (backups are on in prod), the RabbitMQ operator.
    releases = rendered("medium").of_type(HELM)
    assert len(releases) == 3
    for rel in releases:
        assert rel.plain_inputs.get("version"), f"{rel.name}: chart version must be pinned"
    without = render_stack("prod", set={"tier": "medium", "kubernetes.install_operators": False})
    assert without.of_type(HELM) == []


def test_objects_use_the_configured_provider_and_namespace() -> None:
    r = rendered("small")
    (provider,) = r.of_type(PROVIDER)
    for x in objects(r):
        assert x.provider and x.provider.startswith(provider.urn), f"{x.type} {x.name} uses another provider"
        meta = x.inputs.get("metadata", {})
        if x.inputs.get("kind") != "Namespace":
            assert meta.get("namespace") == "banyan", f"{x.type} {x.name}"
