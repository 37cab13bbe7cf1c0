"""The monitoring part in the rendered stacks (Pulumi mocks): off by default and then absent; on Docker its containers
beside the platform's (whose inputs do not change, Nginx's aside), Prometheus on loopback, volumes kept as the data
tier's; on Kubernetes PodMonitors and a PrometheusRule that validate against the Prometheus Operator's CRDs."""

from __future__ import annotations

from functools import cache
from typing import Any

import pytest

from components.monitoring import config as mc
from components.monitoring import kubernetes as mon_k8s
from components.monitoring.docker import nginx_metrics_labels
from model.errors import ConfigError
from testkit import RecordedResource, Rendering, render_stack
from testkit.k8s_check import crd_problems
from testkit.schema_check import input_problems, load_schema
from tests.helpers import shared_file, spec_for, uploads

CONTAINER = "docker:index/container:Container"
VOLUME = "docker:index/volume:Volume"
HELM = "kubernetes:helm.sh/v3:Release"
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
                    mc.postgres_exporter_host("postgres-primary")}


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
                     *map(mc.postgres_exporter_host, spec.postgres.instance_names)}
    # Every data-tier and application container is the same resource with the same inputs: no replacement.
    for host in set(before) - {"nginx"}:
        assert before[host].inputs == after[host].inputs, host
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
    assert any("Redis and Nginx are not scraped" in w for w in spec.warnings)
    unset = spec_for("dev", **{"monitoring.enabled": True})
    assert any("banyan:monitoring.mtail_image is unset" in w for w in unset.warnings)
    assert not any("monitoring" in w for w in spec_for("dev").warnings)


def _monitoring_objects(r: Rendering) -> list[RecordedResource]:
    return [x for x in r.resources if x.type.startswith("kubernetes:monitoring.coreos.com")]


def test_on_kubernetes_podmonitors_and_the_rule_validate_against_the_operators_crds() -> None:
    crd_dir = shared_file("schemas", "crds")
    objects = _monitoring_objects(prod())
    assert sorted(x.inputs["kind"] for x in objects) == ["PodMonitor", "PodMonitor", "PrometheusRule"]
    problems = {x.name: crd_problems(x.inputs, crd_dir) for x in objects}
    assert {k: v for k, v in problems.items() if v} == {}
    rule = next(x for x in objects if x.inputs["kind"] == "PrometheusRule")
    assert rule.plain_inputs["spec"]["groups"] == mc.rule_groups(spec_for("prod", **{"monitoring.enabled": True}))
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
