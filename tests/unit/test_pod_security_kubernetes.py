"""Pod Security "restricted" over the prod stack: every pod template of every tier meets the profile
(testkit.pod_security), the namespace enforces it, and what non-root needs (writable scratch, an
unprivileged Nginx port) is there. The real admission plugin judges the same pods in tests/e2e/apiserver."""

from __future__ import annotations

import copy
from functools import cache
from typing import Any

import pytest

from components.k8s_common import APP_UID, KUBERNETES_VERSION, pod_security_version
from components.nginx.config import UNPRIVILEGED_RUN_DIR
from components.nginx.kubernetes import IMAGE_UID as NGINX_UID
from testkit import Rendering, render_stack, unwrap
from testkit.pod_security import pod_template, violations

TIERS_ = ("small", "medium", "large")
NAMESPACE = "kubernetes:core/v1:Namespace"
PSA = "pod-security.kubernetes.io/"


@cache
def rendered(tier: str) -> Rendering:
    return render_stack("prod", set={"tier": tier})


def workloads(r: Rendering) -> dict[str, dict[str, Any]]:
    """Every object with a pod template, by kind/name, as plain data."""
    found = {}
    for x in r.resources:
        if not x.type.startswith("kubernetes:"):
            continue
        obj = unwrap(x.inputs)
        if pod_template(obj) is not None:
            found[f"{obj['kind']}/{obj['metadata']['name']}"] = obj
    return found


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    template = pod_template(obj)
    assert template is not None
    spec: dict[str, Any] = template["spec"]
    return spec


@pytest.mark.parametrize("tier", TIERS_)
def test_every_pod_template_meets_the_restricted_profile(tier: str) -> None:
    found = workloads(rendered(tier))
    expected = {"Deployment/api-gateway", "Deployment/user-service", "Deployment/order-service",
                "Deployment/nginx", "StatefulSet/redis-node"}
    assert expected <= set(found), sorted(found)
    if tier != "small":
        assert "Job/redis-cluster-create" in found
    problems = {key: violations(pod_spec(obj)) for key, obj in found.items()}
    assert {k: v for k, v in problems.items() if v} == {}


@pytest.mark.parametrize("tier", TIERS_)
def test_every_pod_runs_as_a_fixed_non_root_user_with_a_read_only_root(tier: str) -> None:
    """Not required by the profile, but what makes it hold for any image: an explicit uid (an image whose
    USER is root would otherwise be refused by the kubelet under runAsNonRoot), and nothing writable but
    the volumes the pod mounts."""
    for key, obj in workloads(rendered(tier)).items():
        spec = pod_spec(obj)
        ctx = spec["securityContext"]
        assert ctx["runAsNonRoot"] is True, key
        assert ctx["runAsUser"] > 0 and ctx["runAsGroup"] > 0 and ctx["fsGroup"] == ctx["runAsGroup"], key
        for container in spec["containers"]:
            assert container["securityContext"]["readOnlyRootFilesystem"] is True, key


@pytest.mark.parametrize("tier", TIERS_)
def test_the_uids_are_the_images_users(tier: str) -> None:
    found = workloads(rendered(tier))
    uids = {key: pod_spec(obj)["securityContext"]["runAsUser"] for key, obj in found.items()}
    assert uids["Deployment/nginx"] == NGINX_UID == 101  # the official image's (and nginx-unprivileged's) nginx
    for part in ("api-gateway", "user-service", "order-service"):
        assert uids[f"Deployment/{part}"] == APP_UID >= 10000, part
    assert uids["StatefulSet/redis-node"] == 999  # the official image's redis


@pytest.mark.parametrize("tier", TIERS_)
def test_the_namespace_enforces_restricted_pinned_to_the_validated_minor(tier: str) -> None:
    (namespace,) = rendered(tier).of_type(NAMESPACE)
    labels = unwrap(namespace.inputs)["metadata"]["labels"]
    minor = ".".join(KUBERNETES_VERSION.split(".")[:2])
    assert pod_security_version() == f"v{minor}"
    assert {k: v for k, v in labels.items() if k.startswith(PSA)} == {
        f"{PSA}{mode}{suffix}": value
        for mode in ("enforce", "warn", "audit")
        for suffix, value in (("", "restricted"), ("-version", f"v{minor}"))
    }


@pytest.mark.parametrize("tier", TIERS_)
def test_what_must_be_writable_is_a_mounted_scratch_volume(tier: str) -> None:
    """The gateway and services write to /tmp only (the stack file's placeholder serves /tmp/www); Nginx
    keeps its pid file and temp files in UNPRIVILEGED_RUN_DIR, which its config says and the pod mounts."""
    r = rendered(tier)
    found = workloads(r)
    for key in ("Deployment/api-gateway", "Deployment/user-service", "Deployment/order-service", "Deployment/nginx"):
        spec = pod_spec(found[key])
        scratch = {v["name"] for v in spec["volumes"] if "emptyDir" in v}
        (container,) = spec["containers"]
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert mounts.get("/tmp") in scratch, key
    for key in ("Deployment/api-gateway", "Deployment/user-service", "Deployment/order-service"):
        (container,) = pod_spec(found[key])["containers"]
        command = " ".join(container.get("args") or [])
        assert "/srv" not in command and "/tmp/www" in command, (key, command)
    (conf,) = [unwrap(x.inputs)["data"]["nginx.conf"] for x in r.of_type("kubernetes:core/v1:ConfigMap")
               if x.inputs["metadata"]["name"].startswith("nginx-conf-")]
    assert f"pid {UNPRIVILEGED_RUN_DIR}/nginx.pid;" in conf
    for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        assert f"{kind}_temp_path {UNPRIVILEGED_RUN_DIR}/" in conf, kind


@pytest.mark.parametrize("tier", TIERS_)
def test_nginx_listens_on_an_unprivileged_port_behind_the_public_one(tier: str) -> None:
    """The public port may be privileged (443 here): only the Service listens there."""
    r = render_stack("prod", set={"tier": tier, "nginx.port": 443})
    (container,) = pod_spec(workloads(r)["Deployment/nginx"])["containers"]
    (port,) = container["ports"]
    assert port["containerPort"] >= 1024
    assert "NET_BIND_SERVICE" not in (container["securityContext"]["capabilities"].get("add") or [])
    (service,) = [unwrap(x.inputs) for x in r.of_type("kubernetes:core/v1:Service")
                  if x.inputs["metadata"]["name"] == "nginx"]
    (service_port,) = service["spec"]["ports"]
    assert service_port["port"] == 443 and service_port["targetPort"] == port["containerPort"]
    (conf,) = [unwrap(x.inputs)["data"]["nginx.conf"] for x in r.of_type("kubernetes:core/v1:ConfigMap")
               if x.inputs["metadata"]["name"].startswith("nginx-conf-")]
    assert f"listen {port['containerPort']};" in conf


# ---- the checker itself: a check that cannot fail proves nothing ------------------------------

def _admitted_pod() -> dict[str, Any]:
    return pod_spec(workloads(rendered("small"))["Deployment/nginx"])


def test_the_checker_accepts_the_nginx_pod_and_refuses_its_old_shape() -> None:
    pod = _admitted_pod()
    assert violations(pod) == []
    old = copy.deepcopy(pod)
    old.pop("securityContext")
    old["containers"][0]["securityContext"] = {"allowPrivilegeEscalation": False,
                                               "seccompProfile": {"type": "RuntimeDefault"}}
    assert violations(old) == ["containers[nginx]: runAsNonRoot must be true (pod or container)",
                               "containers[nginx]: capabilities must drop ALL"]


@pytest.mark.parametrize(("change", "problem"), [
    (lambda p: p.update(hostNetwork=True), "hostNetwork: true"),
    (lambda p: p["volumes"].append({"name": "h", "hostPath": {"path": "/"}}), "volume h: type ['hostPath']"),
    (lambda p: p["containers"][0]["ports"][0].update(hostPort=80), "hostPort 80"),
    (lambda p: p["containers"][0]["securityContext"].update(allowPrivilegeEscalation=True),
     "allowPrivilegeEscalation must be false"),
    (lambda p: p["containers"][0]["securityContext"]["capabilities"].update(add=["NET_ADMIN"]),
     "beyond NET_BIND_SERVICE: ['NET_ADMIN']"),
    (lambda p: p["containers"][0]["securityContext"].update(runAsNonRoot=False), "runAsNonRoot must be true"),
    (lambda p: p["securityContext"].update(runAsUser=0), "pod: runAsUser 0 (root)"),
    (lambda p: p["securityContext"].pop("seccompProfile") and p["containers"][0]["securityContext"].pop(
        "seccompProfile"), "seccompProfile must be RuntimeDefault or Localhost"),
    (lambda p: p["containers"][0]["securityContext"].update(seccompProfile={"type": "Unconfined"}),
     "seccompProfile Unconfined not allowed"),
    (lambda p: p["containers"][0]["securityContext"].update(privileged=True), "privileged"),
    (lambda p: p.setdefault("initContainers", []).append({"name": "init", "image": "x"}),
     "initContainers[init]: allowPrivilegeEscalation must be false"),
])
def test_the_checker_finds_each_control(change: Any, problem: str) -> None:
    pod = _admitted_pod()
    change(pod)
    assert any(problem in p for p in violations(pod)), violations(pod)


def test_net_bind_service_is_the_one_capability_a_restricted_pod_may_add() -> None:
    pod = _admitted_pod()
    pod["containers"][0]["securityContext"]["capabilities"]["add"] = ["NET_BIND_SERVICE"]
    assert violations(pod) == []
