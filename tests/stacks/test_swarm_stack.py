"""The swarm stack (Pulumi.swarm.yaml) under mocks: every Swarm input against the provider's schema, and the
guide's Swarm section (replicas, update_config, restart_policy, limits and reservations) as rendered."""

from __future__ import annotations

import base64
import re
from functools import cache
from typing import Any

import pytest

from components import swarm_common as sc
from components.docker_common import Health
from model.readback import swarm_duration
from model.tiers import TIERS
from testkit import Rendering, Secret, render_stack, unwrap, walk_plain
from testkit.schema_check import input_problems, load_schema
from tests.helpers import shared_file

SERVICE = "docker:index/service:Service"
CONFIG = "docker:index/serviceConfig:ServiceConfig"
SECRET = "docker:index/secret:Secret"
NETWORK = "docker:index/network:Network"
STATELESS = {"api-gateway", "user-service", "order-service", "nginx"}
# The data tier's readiness gates: single tasks without data, whose health is their cluster's.
GATES = {"redis-cluster-create", "rabbitmq-ready"}


@cache
def rendered(tier: str, **sets: Any) -> Rendering:
    return render_stack("swarm", set={"tier": tier, **sets})


def services(r: Rendering) -> dict[str, dict[str, Any]]:
    """Each service's plain inputs, by its instance label."""
    out = {}
    for s in r.of_type(SERVICE):
        inputs = unwrap(s.inputs)
        labels = {item["label"]: item["value"] for item in inputs["labels"]}
        out[labels["banyan.instance"]] = inputs
    return out


@pytest.mark.parametrize("tier", sorted(TIERS))
def test_every_swarm_input_validates_against_the_provider_schema(tier: str) -> None:
    schema = load_schema(shared_file("schemas", "pulumi-docker", "schema.json"))
    r = rendered(tier)
    docker_resources = [x for x in r.resources if x.type.startswith("docker:")]
    assert {x.type for x in docker_resources} == {SERVICE, CONFIG, SECRET, NETWORK}
    problems = {f"{x.type} {x.name}": input_problems(schema, x.type, x.inputs) for x in docker_resources}
    assert {k: v for k, v in problems.items() if v} == {}


@pytest.mark.parametrize("tier", sorted(TIERS))
def test_replicas_rollout_restart_and_resources_follow_the_tier_and_the_guide(tier: str) -> None:
    r = rendered(tier)
    spec = TIERS[tier]
    found = services(r)
    assert found["api-gateway"]["mode"]["replicated"]["replicas"] == spec.gateway_instances
    for instance, inputs in found.items():
        update, rollback = inputs["updateConfig"], inputs["rollbackConfig"]
        task = inputs["taskSpec"]
        stateless = instance in STATELESS
        assert (update["parallelism"], update["delay"], update["failureAction"], update["monitor"]) == (
            2 if stateless else 1, "10s", "rollback", swarm_duration(sc.MONITOR_S)), instance
        # Two copies side by side only where a part can run two.
        assert update["order"] == rollback["order"] == ("start-first" if stateless else "stop-first"), instance
        assert task["restartPolicy"]["condition"] == "on-failure"
        limits, reservation = task["resources"]["limits"], task["resources"]["reservation"]
        assert limits["nanoCpus"] >= reservation["nanoCpus"] > 0 and limits["memoryBytes"] >= reservation["memoryBytes"]
        assert inputs["convergeConfig"]["timeout"], instance
        if not stateless:
            # Single replica, tied to its node, its name resolving to the task itself.
            assert inputs["mode"]["replicated"]["replicas"] == 1
            if instance not in GATES:
                assert task["placement"]["constraints"] == ["node.role==manager"], instance
            assert inputs["endpointSpec"]["mode"] == "dnsrr"
    gateway, preset = found["api-gateway"]["taskSpec"]["resources"], spec.resources["gateway"]
    assert (gateway["limits"], gateway["reservation"]) == (
        {"nanoCpus": preset.limits.cpu_millis * 10**6, "memoryBytes": preset.limits.memory_mib * 2**20},
        {"nanoCpus": preset.requests.cpu_millis * 10**6, "memoryBytes": preset.requests.memory_mib * 2**20})


def test_every_data_instance_has_its_own_volume_and_label_placement_keeps_it_there() -> None:
    labelled = services(rendered("medium", **{"swarm.data_placement": "labels"}))
    volumes = {}
    for instance, inputs in labelled.items():
        mounts = [m for m in inputs["taskSpec"]["containerSpec"].get("mounts") or [] if m["type"] == "volume"]
        if instance in STATELESS or instance in GATES:
            assert not mounts, instance
            continue
        assert [m["source"] for m in mounts] == [f"banyan-swarm-{instance}-data"], instance
        volumes[instance] = mounts[0]["source"]
        assert inputs["taskSpec"]["placement"]["constraints"] == [f"node.labels.banyan.{instance}==true"]
    assert len(set(volumes.values())) == len(volumes) == 9


def test_nginx_is_published_through_the_routing_mesh_and_balances_over_the_gateway_tasks() -> None:
    nginx = services(rendered("medium"))["nginx"]
    assert nginx["endpointSpec"]["ports"] == [
        {"targetPort": 80, "publishedPort": 8080, "publishMode": "ingress", "protocol": "tcp"}]
    configs = {c["fileName"]: c for c in nginx["taskSpec"]["containerSpec"]["configs"]}
    conf = next(unwrap(c.inputs) for c in rendered("medium").of_type(CONFIG)
                if "nginx-conf" in c.name)
    text = base64.b64decode(conf["data"]).decode()
    assert re.findall(r"server (\S+) ", text) == ["tasks.api-gateway:3003"]
    assert configs["/etc/nginx/nginx.conf"]["fileMode"] == 0o444


def test_secrets_are_swarm_secrets_never_in_a_service_spec() -> None:
    r = rendered("medium")
    secret_values = {base64.b64decode(unwrap(s.inputs)["data"]).decode() for s in r.of_type(SECRET)}
    assert secret_values and all(len(v) >= 16 for v in secret_values)
    for instance, inputs in services(r).items():
        text = repr(inputs)
        leaked = [v for v in secret_values if v in text]
        assert leaked == [], instance
    primary = services(r)["postgres-primary"]["taskSpec"]["containerSpec"]
    assert primary["commands"][:2] == ["/bin/sh", sc.SECRETS_ENV_PATH]
    assert sorted(s["fileName"] for s in primary["secrets"]) == [
        "/run/secrets/POSTGRES_APP_PASSWORD", "/run/secrets/POSTGRES_REPLICATION_PASSWORD"]
    # The health check reads the same variables: it runs through the wrapper too.
    assert primary["healthcheck"]["tests"][:3] == ["CMD", "/bin/sh", sc.SECRETS_ENV_PATH]


def test_an_application_image_without_a_command_keeps_its_entrypoint_and_gets_env() -> None:
    r = rendered("small", **{"gateway.command": None})
    gateway = services(r)["api-gateway"]["taskSpec"]["containerSpec"]
    assert "commands" not in gateway and "args" not in gateway
    assert "REDIS_PASSWORD" in gateway["env"] and "secrets" not in gateway


def test_the_secrets_wrapper_and_health_wrapping() -> None:
    script = sc.render_secrets_env(["B", "A"])
    assert "for name in A B; do" in script and script.rstrip().endswith('exec "$@"')
    assert sc.wrapped_health(Health(("CMD-SHELL", "true")), True) == (
        "CMD", "/bin/sh", sc.SECRETS_ENV_PATH, "/bin/sh", "-c", "true")
    assert sc.wrapped_health(Health(("CMD", "a", "b")), False) == ("CMD", "a", "b")
    assert [swarm_duration(s) for s in (0, 10, 60, 90, 600, 3600)] == ["0s", "10s", "1m", "1m30s", "10m", "1h"]


def test_rendering_twice_gives_identical_inputs_and_no_secret_is_plain() -> None:
    first, second = render_stack("swarm"), render_stack("swarm")
    assert sorted((x.type, x.name, repr(x.inputs)) for x in first.resources) == sorted(
        (x.type, x.name, repr(x.inputs)) for x in second.resources)
    for x in first.of_type(SECRET):
        assert isinstance(x.inputs["data"], Secret) and not list(walk_plain(x.inputs["data"]))


def test_changing_the_tier_keeps_every_service_name() -> None:
    small = {s.name: unwrap(s.inputs)["name"] for s in rendered("small").of_type(SERVICE)}
    medium = {s.name: unwrap(s.inputs)["name"] for s in rendered("medium").of_type(SERVICE)}
    assert all(medium[k] == v for k, v in small.items() if k in medium)


def test_swarm_object_names_fit_swarms_limit() -> None:
    r = rendered("large")
    names = [unwrap(x.inputs)["name"] for x in [*r.of_type(CONFIG), *r.of_type(SECRET), *r.of_type(SERVICE)]]
    assert names and all(re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}[a-zA-Z0-9]", n) for n in names), names
    assert len(set(names)) == len(names)


def test_host_publishing_rolls_nginx_stop_first_one_per_node() -> None:
    nginx = services(rendered("medium", **{"swarm.publish_mode": "host"}))["nginx"]
    assert nginx["endpointSpec"]["ports"][0]["publishMode"] == "host"
    assert (nginx["updateConfig"]["order"], nginx["updateConfig"]["parallelism"]) == ("stop-first", 1)
    assert nginx["taskSpec"]["placement"]["maxReplicas"] == 1


@pytest.mark.parametrize(("running", "ok"), [
    (["rabbit@rabbitmq-1", "rabbit@rabbitmq-2", "rabbit@rabbitmq-3"], True),
    (["rabbit@rabbitmq-1", "rabbit@rabbitmq-2"], False),
    ([], False),
])
def test_the_rabbitmq_gate_passes_only_when_every_node_runs_in_one_cluster(running: list[str], ok: bool) -> None:
    """The gate's shell (up to the authentication, which needs a broker) under the system's /bin/sh."""
    import json
    import subprocess

    from components.rabbitmq.swarm import gate_check
    from model.config import parse_config
    from model.tiers import resolve
    from testkit.render import read_stack_file, to_engine_config

    raw, _ = to_engine_config(read_stack_file("swarm"))
    config, _ = parse_config(raw)
    assert config is not None
    platform, _ = resolve(config, project="banyan", stack="swarm")
    assert platform is not None
    check = gate_check(platform.rabbitmq)
    membership = check.split(" && ", 1)[1].rsplit(" && printf", 1)[0]
    status = json.dumps({"disk_nodes": ["rabbit@rabbitmq-1", "rabbit@rabbitmq-2", "rabbit@rabbitmq-3"],
                         "running_nodes": running, "versions": []})
    result = subprocess.run(["/bin/sh", "-c", f"out=$(printf %s '{status}' | tr -d ' \\n\\t'); {membership}"],
                            check=False)
    assert (result.returncode == 0) is ok


def test_the_wrapper_exports_secrets_and_drains_before_stopping_its_command(tmp_path: Any) -> None:
    """Under the system's /bin/sh, with the secrets directory moved to tmp_path: the command sees the variable,
    and SIGTERM reaches it only after the drain delay, whose exit status the wrapper then returns."""
    import signal
    import subprocess
    import time

    (tmp_path / "A").write_text("s3cret")
    script = tmp_path / "wrapper.sh"
    script.write_text(sc.render_secrets_env(["A"], drain_s=1).replace(sc.SECRETS_DIR, str(tmp_path)))
    child = ('trap "echo got-term; exit 3" TERM; echo "A=$A"; '
             'while [ ! -e "$0.stop" ]; do sleep 0.05; done')
    proc = subprocess.Popen(["/bin/sh", str(script), "/bin/sh", "-c", child, str(script)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "A=s3cret"
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 3
    assert time.monotonic() - started >= 1
    assert proc.stdout.read().strip() == "got-term"
    missing = subprocess.run(["/bin/sh", str(script), "true"], env={"PATH": "/usr/bin:/bin"}, check=False,
                             capture_output=True, text=True)
    assert missing.returncode == 0
    (tmp_path / "A").unlink()
    gone = subprocess.run(["/bin/sh", str(script), "true"], check=False, capture_output=True, text=True)
    assert gone.returncode == 1 and "missing" in gone.stderr
