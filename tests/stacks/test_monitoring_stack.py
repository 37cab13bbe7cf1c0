"""The monitoring part in the rendered stacks (Pulumi mocks): off by default and then absent; on Docker its containers
beside the platform's (whose inputs do not change, Nginx's aside), Prometheus on loopback, volumes kept as the data
tier's; on Kubernetes PodMonitors and a PrometheusRule that validate against the Prometheus Operator's CRDs."""

from __future__ import annotations

from functools import cache
from typing import Any

import pytest

from components.monitoring import config as mc
from components.monitoring import kubernetes as mon_k8s
from components.monitoring.docker import CADVISOR_HOST_MOUNTS, nginx_metrics_labels
from components.monitoring.images import CADVISOR, REDIS_EXPORTER
from components.redis import docker as redis_docker
from components.redis.config import CONF_PATH as REDIS_CONF
from components.redis.config import START_PATH as REDIS_START
from components.redis.config import render_start_script
from infra.preflight import node_digests
from model.errors import ConfigError
from model.preflight import CONFIG_LABEL
from model.preflight_kubernetes import MTAIL_CONTAINER, REDIS_EXPORTER_CONTAINER
from testkit import RecordedResource, Rendering, render_stack
from testkit.k8s_check import builtin_problems, crd_problems
from testkit.pod_security import violations
from testkit.schema_check import input_problems, load_schema
from tests.helpers import env_of, shared_file, spec_for, uploads
from tests.stacks.test_kubernetes_stack import PROMETHEUS, connects, in_ns, pod_label_sets
from tooling.plan import monitoring_lines

CONTAINER = "docker:index/container:Container"
VOLUME = "docker:index/volume:Volume"
HELM = "kubernetes:helm.sh/v3:Release"
CONFIG_MAP = "kubernetes:core/v1:ConfigMap"
MTAIL = "banyan-local/mtail:bookworm-3.0.0"
ON = {"monitoring.enabled": True, "monitoring.mtail_image": MTAIL}


@cache
def dev(**sets: Any) -> Rendering:
    return render_stack("dev", set=sets)


@cache
def dev_on(tier: str = "small", protect: bool = False) -> Rendering:
    return render_stack("dev", set={**ON, "tier": tier, "protect": protect})


@cache
def prod(**sets: Any) -> Rendering:
    return render_stack("prod", set={"monitoring.enabled": True, **sets})


def containers(r: Rendering) -> dict[str, RecordedResource]:
    return {c.plain_inputs["hostname"]: c for c in r.of_type(CONTAINER)}


MONITORING_HOSTS = {mc.PROMETHEUS_HOST, mc.ALERTMANAGER_HOST, mc.REDIS_EXPORTER_HOST, mc.NGINX_METRICS_HOST,
                    mc.CADVISOR_HOST, mc.postgres_exporter_host("postgres-primary")}


def test_off_by_default_nothing_of_it_is_rendered() -> None:
    r = dev()
    assert not [x for x in r.resources if "monitoring" in x.name]
    assert not set(containers(r)) & MONITORING_HOSTS
    nginx = containers(r)["nginx"]
    assert "banyan_metrics" not in uploads(nginx)["/etc/nginx/nginx.conf"][0]
    assert "prometheus_url" not in r.stack_outputs
    assert not [x for x in render_stack("prod").resources if x.type.startswith("kubernetes:monitoring.coreos.com")]


@pytest.mark.parametrize("tier", ["small", "large"])
def test_enabled_on_docker_the_platform_containers_keep_their_inputs_and_nginx_gains_the_metrics_log(
        tier: str) -> None:
    before, after = containers(dev(tier=tier)), containers(dev_on(tier))
    spec = spec_for("dev", **ON, tier=tier)
    added = set(after) - set(before)
    assert added == {mc.PROMETHEUS_HOST, mc.ALERTMANAGER_HOST, mc.REDIS_EXPORTER_HOST, mc.NGINX_METRICS_HOST,
                     mc.CADVISOR_HOST, *map(mc.postgres_exporter_host, spec.postgres.instance_names)}
    # Every data-tier and application container is the same resource with the same inputs: no replacement; but the
    # Redis nodes, whose start script also defines the exporter's ACL user from one more (secret) variable.
    nodes = set(spec.redis.instance_names)
    for host in set(before) - {"nginx", *nodes}:
        assert before[host].inputs == after[host].inputs, host
    exporter = env_of(after[mc.REDIS_EXPORTER_HOST], secret=True)
    digests = node_digests(spec)
    for host in nodes:
        old, new = before[host], after[host]
        assert ({k: v for k, v in new.inputs.items() if k not in ("uploads", "labels", "envs")}
                == {k: v for k, v in old.inputs.items() if k not in ("uploads", "labels", "envs")}), host
        assert uploads(new)[REDIS_START] == (render_start_script(spec.redis, monitor=True), True)
        assert uploads(new)[REDIS_CONF] == uploads(old)[REDIS_CONF]
        env = env_of(new, secret=True)
        assert env == {**env_of(old, secret=True), "REDIS_MONITOR_PASSWORD": exporter["REDIS_PASSWORD"]}
        # The preview predicts the replacement (model/preflight.py: several nodes at once is a warning).
        labels = {x["label"]: x["value"] for x in new.plain_inputs["labels"]}
        assert labels[CONFIG_LABEL] == digests[host] == redis_docker.node_digest(spec.redis, host, monitor=True)
    # Nginx: one more access_log (to mtail, which it starts after), and mtail's config as a label (a new mtail
    # container has a new address, which Nginx only resolves at start).
    nginx = after["nginx"]
    conf = uploads(nginx)["/etc/nginx/nginx.conf"][0]
    assert f"access_log {mc.nginx_syslog_target(mc.NGINX_METRICS_HOST)} banyan_metrics;" in conf
    assert after[mc.NGINX_METRICS_HOST].urn in nginx.depends_on
    labels = {x["label"]: x["value"] for x in nginx.plain_inputs["labels"]}
    assert nginx_metrics_labels(spec).items() <= labels.items()


def test_prometheus_is_published_on_loopback_only_and_ships_the_rendered_rules_and_scrape_config() -> None:
    r = dev_on()
    spec = spec_for("dev", **ON)
    published = {h: c.plain_inputs.get("ports") for h, c in containers(r).items() if c.plain_inputs.get("ports")}
    assert published[mc.PROMETHEUS_HOST] == [{"internal": mc.PROMETHEUS_PORT, "external": 9090, "ip": "127.0.0.1",
                                             "protocol": "tcp"}]
    for host in MONITORING_HOSTS - {mc.PROMETHEUS_HOST}:
        assert host not in published, f"{host} is published on the host"
    prometheus = containers(r)[mc.PROMETHEUS_HOST]
    files = uploads(prometheus)
    assert files[mc.RULES_PATH][0] == mc.render_rules(spec)
    assert files[mc.PROMETHEUS_CONF][0] == mc.render_prometheus_yml(spec)
    assert r.stack_outputs["prometheus_url"] == "http://127.0.0.1:9090"
    moved = render_stack("dev", set={**ON, "monitoring.prometheus_port": 19090})
    assert containers(moved)[mc.PROMETHEUS_HOST].plain_inputs["ports"][0]["external"] == 19090


@pytest.mark.parametrize("protect", [False, True])
def test_prometheus_and_alertmanager_volumes_are_kept_like_the_data_tiers(protect: bool) -> None:
    r = dev_on(protect=protect)
    volumes = {v.name: v for v in r.of_type(VOLUME)}
    for name in ("banyan-monitoring-prometheus-data", "banyan-monitoring-alertmanager-data"):
        assert volumes[name].retain_on_delete and volumes[name].protect is protect, name
    data = {h: [m["containerPath"] for m in c.plain_inputs.get("volumes") or []] for h, c in containers(r).items()}
    assert data[mc.PROMETHEUS_HOST] == [mc.PROMETHEUS_DATA]
    assert data[mc.ALERTMANAGER_HOST] == [mc.ALERTMANAGER_DATA]


def test_exporters_log_in_with_the_stack_secrets_never_in_plain_text() -> None:
    r = dev_on()
    pg = containers(r)[mc.postgres_exporter_host("postgres-primary")]
    plain = [e for e in pg.inputs["envs"] if isinstance(e, str)]
    assert not [e for e in plain if e.startswith("DATA_SOURCE_PASS=")], "the password travels as a secret"
    assert "DATA_SOURCE_USER=banyan" in plain
    redis = containers(r)[mc.REDIS_EXPORTER_HOST]
    assert not [e for e in redis.inputs["envs"] if isinstance(e, str) and e.startswith("REDIS_PASSWORD=")]
    # Its own ACL user (statistics only), never the administrator or the applications' user.
    exporter, node = env_of(redis, secret=True), env_of(containers(r)["redis-node-1"], secret=True)
    assert "REDIS_USER=banyan-monitor" in redis.inputs["envs"]
    assert exporter["REDIS_PASSWORD"] == node["REDIS_MONITOR_PASSWORD"]
    assert exporter["REDIS_PASSWORD"] not in {node["REDIS_PASSWORD"], node["REDIS_APP_PASSWORD"]}
    assert len(exporter["REDIS_PASSWORD"]) > 20


def test_every_monitoring_input_validates_against_the_docker_schema() -> None:
    schema = load_schema(shared_file("schemas", "pulumi-docker", "schema.json"))
    resources = [x for x in dev_on("large").resources if x.type.startswith("docker:") and "monitoring" in x.name]
    assert len(resources) >= 8
    problems = {x.name: input_problems(schema, x.type, x.inputs) for x in resources}
    assert {k: v for k, v in problems.items() if v} == {}


def test_the_alertmanager_receiver_is_the_stacks_webhook_and_none_by_default() -> None:
    default = uploads(containers(dev_on())[mc.ALERTMANAGER_HOST])[mc.ALERTMANAGER_CONF][0]
    assert "webhook_configs" not in default
    url = "https://relay.example.com/hooks/banyan"
    hooked = render_stack("dev", set={**ON, "monitoring.alertmanager_webhook_url": url})
    conf = uploads(containers(hooked)[mc.ALERTMANAGER_HOST])[mc.ALERTMANAGER_CONF][0]
    assert f"url: {url}" in conf


@pytest.mark.parametrize(("key", "value", "allowed"), [
    ("monitoring.alertmanager_webhook_url", "relay:8080", "http:// or https:// URL"),
    ("monitoring.prometheus_port", 0, "greater than or equal to 1"),
    ("monitoring.scrape_interval_s", 0, "greater than or equal to 1"),
    ("monitoring.mtail_image", "mtail:latest", "not 'latest'"),
    ("monitoring.enabled", "maybe", "true or false"),
])
def test_bad_monitoring_input_is_one_message_naming_the_key(key: str, value: Any, allowed: str) -> None:
    with pytest.raises(ConfigError) as caught:
        spec_for("dev", **{key: value})
    text = str(caught.value)
    assert f"banyan:{key}" in text and allowed in text, text


def test_docker_only_keys_are_warned_about_on_kubernetes_and_what_is_not_watched_is_said() -> None:
    spec = spec_for("prod", **{"monitoring.enabled": True, "monitoring.prometheus_port": 9999})
    assert any("banyan:monitoring.prometheus_port only applies to target docker" in w for w in spec.warnings)
    # Without an mtail image, both targets say that Nginx is not watched; with one, nothing is left unwatched.
    assert any("banyan:monitoring.mtail_image is unset" in w for w in spec.warnings)
    assert not any("mtail" in w for w in spec_for("prod", **ON).warnings)
    unset = spec_for("dev", **{"monitoring.enabled": True})
    assert any("banyan:monitoring.mtail_image is unset" in w for w in unset.warnings)
    assert not any("monitoring" in w for w in spec_for("dev").warnings)
    # The plan says that the sidecars roll the pods they join (the preview says so against the live StatefulSet:
    # tests/unit/test_preflight_kubernetes.py).
    where = monitoring_lines(spec_for("prod", **ON))[0]
    assert "the Redis pods (redis-exporter) and the Nginx pods (mtail)" in where and "rolls them" in where
    assert "rolls" not in monitoring_lines(unset)[0]
    assert "the Redis nodes define the exporter's ACL user" in monitoring_lines(unset)[0]


def _monitoring_objects(r: Rendering) -> list[RecordedResource]:
    return [x for x in r.resources if x.type.startswith("kubernetes:monitoring.coreos.com")]


def test_on_kubernetes_podmonitors_and_the_rule_validate_against_the_operators_crds() -> None:
    crd_dir = shared_file("schemas", "crds")
    objects = _monitoring_objects(prod(**{"monitoring.mtail_image": MTAIL}))
    assert sorted(x.inputs["kind"] for x in objects) == ["PodMonitor"] * 4 + ["PrometheusRule"]
    problems = {x.name: crd_problems(x.inputs, crd_dir) for x in objects}
    assert {k: v for k, v in problems.items() if v} == {}
    rule = next(x for x in objects if x.inputs["kind"] == "PrometheusRule")
    assert rule.plain_inputs["spec"]["groups"] == mc.rule_groups(spec_for("prod", **ON))
    # The sidecars' alerts are the rule's (their cases: tests/unit/test_monitoring_rules.py).
    alerts = {r["alert"] for g in rule.plain_inputs["spec"]["groups"] for r in g["rules"] if "alert" in r}
    assert {"BanyanCacheHitRateLow", "BanyanRequestLatencyHigh", "BanyanErrorRateHigh",
            "BanyanRedisClusterStateNotOk"} <= alerts
    # Without an mtail image: Redis' monitor and alerts, none of Nginx's.
    redis_only = _monitoring_objects(prod())
    assert sorted(x.plain_inputs["metadata"]["name"] for x in redis_only if x.inputs["kind"] == "PodMonitor") == [
        "postgres", "rabbitmq", "redis"]
    groups = next(x for x in redis_only if x.inputs["kind"] == "PrometheusRule").plain_inputs["spec"]["groups"]
    alerts = {r["alert"] for g in groups for r in g["rules"] if "alert" in r}
    assert "BanyanCacheHitRateLow" in alerts and "BanyanRequestLatencyHigh" not in alerts
    # The validator does catch a broken monitor.
    monitor = next(x for x in objects if x.inputs["kind"] == "PodMonitor")
    broken = {**monitor.inputs, "spec": {**monitor.inputs["spec"], "podMetricEndpoints": []}}
    assert crd_problems(broken, crd_dir)


def test_the_monitors_select_the_parts_pods_on_the_ports_the_network_policies_open() -> None:
    spec = spec_for("prod", **{"monitoring.enabled": True})
    monitors = {x.plain_inputs["metadata"]["name"]: x.plain_inputs["spec"] for x in _monitoring_objects(prod())
                if x.inputs["kind"] == "PodMonitor"}
    pg, mq = monitors[spec.postgres.name], monitors[spec.rabbitmq.name]
    assert pg["selector"]["matchLabels"] == {"cnpg.io/cluster": spec.postgres.name, "cnpg.io/podRole": "instance"}
    assert [e["port"] for e in pg["podMetricsEndpoints"]] == ["metrics"]
    assert [(e["port"], e.get("path")) for e in mq["podMetricsEndpoints"]] == [("prometheus", None),
                                                                             ("prometheus", "/metrics/detailed")]
    policies = [x.plain_inputs for x in prod().resources if x.type.endswith("NetworkPolicy")]
    opened = {(p["metadata"]["name"], port["port"]) for p in policies for rule in p["spec"].get("ingress", [])
              for port in rule.get("ports", []) if any(
                  (peer.get("namespaceSelector") or {}).get("matchLabels", {}).get("kubernetes.io/metadata.name")
                  == spec.monitoring.namespace for peer in rule.get("from", []))}
    assert {port for _, port in opened} >= {9187, 15692}


def test_monitor_labels_and_the_optional_operator_install() -> None:
    labelled = _monitoring_objects(render_stack("prod", set={"monitoring.enabled": True,
                                                             "monitoring.monitor_labels": {"release": "kps"}}))
    assert labelled
    assert all(x.plain_inputs["metadata"]["labels"]["release"] == "kps" for x in labelled)
    assert not prod().of_type(HELM) or all(r.plain_inputs["chart"] != mon_k8s.CHART for r in prod().of_type(HELM))
    installed = prod(**{"monitoring.install_operator": True})
    (release,) = [r for r in installed.of_type(HELM) if r.plain_inputs["chart"] == mon_k8s.CHART]
    assert (release.plain_inputs["version"], release.plain_inputs["namespace"]) == (mon_k8s.CHART_VERSION,
                                                                                   "monitoring")
    values = release.plain_inputs["values"]["prometheus"]["prometheusSpec"]
    assert values["podMonitorSelectorNilUsesHelmValues"] is False
    assert values["ruleSelectorNilUsesHelmValues"] is False
    for monitor in _monitoring_objects(installed):
        assert release.urn in monitor.depends_on


# ---- Kubernetes: the sidecars in the Redis and Nginx pods ---------------------------------------------------------

def _workload(r: Rendering, kind: str, name: str) -> dict[str, Any]:
    """The workload's object; it validates strictly for the Kubernetes version the stack targets."""
    (found,) = [x for x in r.of_type(f"kubernetes:apps/v1:{kind}") if x.plain_inputs["metadata"]["name"] == name]
    assert builtin_problems(found.inputs) == [], f"{kind}/{name}"
    obj: dict[str, Any] = found.plain_inputs
    return obj


def _containers(pod: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in [*pod.get("initContainers", []), *pod["containers"]]}


def test_off_on_kubernetes_the_redis_and_nginx_pods_have_no_sidecar_and_no_metrics_port_is_open() -> None:
    r = render_stack("prod", set={"monitoring.mtail_image": MTAIL})
    redis = _workload(r, "StatefulSet", "redis-node")["spec"]["template"]["spec"]
    nginx = _workload(r, "Deployment", "nginx")["spec"]["template"]["spec"]
    assert list(_containers(redis)) == ["redis"] and list(_containers(nginx)) == ["nginx"]
    conf = next(x.plain_inputs["data"]["nginx.conf"] for x in r.of_type(CONFIG_MAP)
                if "nginx.conf" in x.plain_inputs["data"])
    assert "syslog:" not in conf
    ports = {port["port"] for x in r.resources if x.type.endswith("NetworkPolicy")
             for rule in x.plain_inputs["spec"].get("ingress", []) for port in rule.get("ports", [])}
    assert not ports & {mc.REDIS_EXPORTER_PORT, mc.MTAIL_PORT}


def test_on_kubernetes_each_redis_pod_runs_the_exporter_against_its_own_node_with_the_secret_password() -> None:
    r = prod()
    spec = spec_for("prod", **{"monitoring.enabled": True})
    statefulset = _workload(r, "StatefulSet", "redis-node")
    pod = statefulset["spec"]["template"]["spec"]
    containers = _containers(pod)
    assert list(containers) == ["redis", REDIS_EXPORTER_CONTAINER]
    exporter = containers[REDIS_EXPORTER_CONTAINER]
    assert exporter["image"] == REDIS_EXPORTER.ref
    # The Docker exporter's flags, and this pod's own node on loopback.
    assert exporter["args"] == [*mc.redis_exporter_args(), f"--redis.addr=redis://localhost:{spec.redis.port}"]
    # Its own ACL user, its password from the Redis Secret (the key the node's REDIS_MONITOR_PASSWORD reads, with
    # which the start script defines the user), never a literal and never the administrator's.
    node_env = {e["name"]: e for e in containers["redis"]["env"]}
    user, password = exporter["env"]
    assert user == {"name": "REDIS_USER", "value": "banyan-monitor"}
    assert password["name"] == "REDIS_PASSWORD" and "value" not in password
    assert password["valueFrom"] == {"secretKeyRef": {"name": f"{spec.redis.name}-auth", "key": "monitor-password"}}
    assert password["valueFrom"] == node_env["REDIS_MONITOR_PASSWORD"]["valueFrom"]
    assert password["valueFrom"] != node_env["REDIS_PASSWORD"]["valueFrom"]
    secret = next(x for x in r.of_type("kubernetes:core/v1:Secret")
                  if x.plain_inputs["metadata"]["name"] == f"{spec.redis.name}-auth")
    assert set(secret.plain_inputs["stringData"]) == {"password", "app-password", "monitor-password"}
    off_r = render_stack("prod")
    off_secret = next(x for x in off_r.of_type("kubernetes:core/v1:Secret")
                      if x.plain_inputs["metadata"]["name"] == f"{spec.redis.name}-auth")
    assert set(off_secret.plain_inputs["stringData"]) == {"password", "app-password"}
    assert exporter["ports"] == [{"name": mon_k8s.METRICS_PORT_NAME, "containerPort": mc.REDIS_EXPORTER_PORT,
                                  "protocol": "TCP"}]
    assert exporter["readinessProbe"]["httpGet"] == {"path": "/health", "port": mon_k8s.METRICS_PORT_NAME}
    limits = exporter["resources"]["limits"]
    assert limits == {"cpu": "200m", "memory": "64Mi"}
    assert violations(pod) == []
    # The Redis node's own container is what it was without monitoring but for the exporter's user's password (its
    # start script, in the ConfigMap, defines the user); the pod gained the sidecar.
    off = _workload(off_r, "StatefulSet", "redis-node")
    node = dict(containers["redis"])
    node["env"] = [e for e in node["env"] if e["name"] != "REDIS_MONITOR_PASSWORD"]
    assert _containers(off["spec"]["template"]["spec"])["redis"] == node
    files = next(x.plain_inputs["data"] for x in r.of_type(CONFIG_MAP) if "start.sh" in x.plain_inputs["data"])
    assert files["start.sh"] == render_start_script(spec.redis, monitor=True)
    # The monitor selects exactly the StatefulSet's pods, on the exporter's port.
    monitors = {x.plain_inputs["metadata"]["name"]: x.plain_inputs["spec"] for x in _monitoring_objects(r)}
    assert monitors[spec.redis.name]["selector"] == statefulset["spec"]["selector"]
    assert [e["port"] for e in monitors[spec.redis.name]["podMetricsEndpoints"]] == [mon_k8s.METRICS_PORT_NAME]


def test_on_kubernetes_each_nginx_pod_logs_to_its_own_mtail_sidecar() -> None:
    r = prod(**{"monitoring.mtail_image": MTAIL})
    spec = spec_for("prod", **ON)
    deployment = _workload(r, "Deployment", "nginx")
    pod = deployment["spec"]["template"]["spec"]
    (mtail,) = pod["initContainers"]
    assert (mtail["name"], mtail["image"], mtail["restartPolicy"]) == (MTAIL_CONTAINER, MTAIL, "Always")
    assert mtail["command"] == ["mtail"]
    # Docker's flags, the syslog socket on the pod's loopback only.
    assert mtail["args"] == mc.mtail_args("127.0.0.1")
    assert "udp://127.0.0.1:5140" in mtail["args"]
    assert "readinessProbe" not in mtail and mtail["startupProbe"]["httpGet"]["port"] == mon_k8s.METRICS_PORT_NAME
    assert violations(pod) == []
    # Nginx's config (the ConfigMap its pods mount) sends the access log to the sidecar, not to Docker's host name.
    maps = {x.plain_inputs["metadata"]["name"]: x.plain_inputs["data"] for x in r.of_type(CONFIG_MAP)}
    volumes = {v["name"]: v["configMap"]["name"] for v in pod["volumes"] if "configMap" in v}
    conf = maps[volumes["conf"]]["nginx.conf"]
    assert f"access_log {mc.nginx_syslog_target('127.0.0.1')} banyan_metrics;" in conf
    assert mc.NGINX_METRICS_HOST not in conf
    # mtail's program is the Docker one, mounted where its --progs points.
    (mount,) = mtail["volumeMounts"]
    assert maps[volumes[mount["name"]]][mount["subPath"]] == mc.render_mtail_program()
    assert mount["mountPath"] == mc.MTAIL_PROGRAM
    monitors = {x.plain_inputs["metadata"]["name"]: x.plain_inputs["spec"] for x in _monitoring_objects(r)}
    assert monitors[spec.nginx.name]["selector"] == deployment["spec"]["selector"]


def test_on_kubernetes_only_the_monitoring_namespaces_scrapers_reach_the_sidecars_metrics_ports() -> None:
    r = prod(**{"monitoring.mtail_image": MTAIL})
    pods = pod_label_sets(r)
    redis, nginx = in_ns(pods["StatefulSet/redis-node"]), in_ns(pods["Deployment/nginx"])
    gateway = in_ns(pods["Deployment/api-gateway"])
    grafana = ("monitoring", {"app.kubernetes.io/name": "grafana"}, None)
    assert connects(r, PROMETHEUS, redis, mc.REDIS_EXPORTER_PORT)
    assert connects(r, PROMETHEUS, nginx, mc.MTAIL_PORT)
    assert not connects(r, grafana, redis, mc.REDIS_EXPORTER_PORT)
    assert not connects(r, gateway, redis, mc.REDIS_EXPORTER_PORT)
    assert not connects(r, gateway, nginx, mc.MTAIL_PORT)
    assert not connects(r, (None, None, "203.0.113.7"), nginx, mc.MTAIL_PORT)
    # The syslog socket is the pod's own: nobody outside it may send there.
    assert not connects(r, gateway, nginx, mc.MTAIL_SYSLOG_PORT, "UDP")
    assert not connects(r, PROMETHEUS, nginx, mc.MTAIL_SYSLOG_PORT, "UDP")
    assert not connects(r, PROMETHEUS, redis, 6379)


def test_cadvisor_reads_the_host_read_only_publishes_nothing_and_prometheus_keeps_only_this_stacks_containers(
        ) -> None:
    r = dev_on()
    spec = spec_for("dev", **ON)
    found = containers(r)
    cadvisor = found[mc.CADVISOR_HOST]
    i = cadvisor.plain_inputs
    assert i["image"] == CADVISOR.ref == "ghcr.io/google/cadvisor:v0.61.0"
    assert cadvisor.parent is not None and "monitoring" in cadvisor.parent
    # Host paths only, every one read-only; no volume, no published port.
    assert sorted((v["hostPath"], v["containerPath"], v.get("readOnly")) for v in i["volumes"]) == [
        ("/sys", "/sys", True), ("/var/lib/docker", "/var/lib/docker", True), ("/var/run", "/var/run", True)]
    assert len(CADVISOR_HOST_MOUNTS) == 3 and not [v for v in i["volumes"] if "volumeName" in v]
    assert not i.get("ports")
    assert {x["label"]: x["value"] for x in i["labels"]}["banyan.part"] == "monitoring"
    assert i["healthcheck"]["tests"][-1] == f"http://127.0.0.1:{mc.CADVISOR_PORT}/healthz"
    assert "-docker_only=true" in i["command"] and "-store_container_labels=false" in i["command"]
    kept = next(a for a in i["command"] if a.startswith("-whitelisted_container_labels="))
    assert kept.split("=", 1)[1].split(",") == list(mc.CADVISOR_LABELS)
    # The scrape job keeps a series by the project and stack labels: every container of the stack carries them.
    for host, c in found.items():
        labels = {x["label"]: x["value"] for x in c.plain_inputs["labels"]}
        assert {"banyan.project": spec.project, "banyan.stack": spec.stack}.items() <= labels.items(), host
        assert set(mc.CADVISOR_LABELS) <= set(labels), host
    job = next(j for j in mc.scrape_configs(spec) if j["job_name"] == "cadvisor")
    assert job["static_configs"][0]["targets"] == [f"{mc.CADVISOR_HOST}:{mc.CADVISOR_PORT}"]
    keep = job["metric_relabel_configs"][0]
    assert keep["action"] == "keep" and keep["regex"] == f"{spec.project};{spec.stack}"
    assert keep["source_labels"] == ["container_label_banyan_project", "container_label_banyan_stack"]
    # Prometheus starts after it (its first scrape finds it).
    assert cadvisor.urn in found[mc.PROMETHEUS_HOST].depends_on
    # Off: no cAdvisor, no job.
    assert mc.CADVISOR_HOST not in containers(dev())
