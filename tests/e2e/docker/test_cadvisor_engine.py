"""cAdvisor on the real engine: the monitoring part's rendered cAdvisor container (the image scripts/build-cadvisor
builds of the pinned release, with the rendered flags and read-only host mounts) beside a rendered container with
CPU and memory limits. What the BanyanContainer* alerts read must be there for it, labelled by its name: usage, the
CPU quota and period and the memory limit the stack rendered, and only the stack's own container labels.

    sudo .venv/bin/pytest tests/e2e/docker/test_cadvisor_engine.py -rA

Skips without an engine or the two images, fails instead with BANYAN_REQUIRE_DOCKER=1; the engine lock is the
main suite's (its `engine` fixture)."""

from __future__ import annotations

import re
import time

import pytest

from testkit import render_stack
from tests.e2e.docker.driver import Engine, StackDriver, local_images, local_stack_sets, wait_until
from tests.e2e.docker.test_docker_engine import _unavailable, engine, http_get, measured

__all__ = ["engine"]  # the session fixture, shared with the main suite (same lock)

LOADED = "api-gateway-1"
SCRAPE_S = 2
SAMPLE = re.compile(r'^(?P<metric>[a-z_]+)\{(?P<labels>[^}]*)\} (?P<value>\S+)', re.M)


def _series(text: str, metric: str, name: str) -> list[dict[str, str]]:
    """Each sample of `metric` for the container `name`: its labels, and its value under "value"."""
    out = []
    for m in SAMPLE.finditer(text):
        if m["metric"] != metric:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m["labels"]))
        if labels.get("name") == name:
            out.append({**labels, "value": m["value"]})
    return out


def test_cadvisor_reports_a_limited_containers_usage_and_limits_by_its_name(engine: Engine) -> None:
    images = local_images(engine)
    if "cadvisor" not in images or "python" not in images:
        _unavailable(f"no local cadvisor/python image (have {sorted(images)}): run `sudo ./scripts/build-images` "
                     "and `sudo ./scripts/build-cadvisor`")
    rendering = render_stack("dev", set={**local_stack_sets(images), "monitoring.enabled": True,
                                         "monitoring.scrape_interval_s": SCRAPE_S})
    wanted = {"cadvisor", LOADED}
    chosen = [c for c in rendering.of_type("docker:index/container:Container")
              if c.plain_inputs["hostname"] in wanted]
    mapping = {str(c.plain_inputs["image"]): images["cadvisor" if c.plain_inputs["hostname"] == "cadvisor"
                                                      else "python"].tag for c in chosen}
    driver = StackDriver(rendering, mapping, engine=engine,
                         select=lambda r: r.plain_inputs.get("hostname") in wanted)
    driver.purge()
    try:
        started = time.monotonic()
        driver.up()
        up_s = time.monotonic() - started
        assert {n: p for n in wanted if (p := driver.mismatches(n))} == {}
        binds = driver.inspect("cadvisor")["HostConfig"]["Binds"]
        assert sorted(binds) == ["/sys:/sys:ro", "/var/lib/docker:/var/lib/docker:ro", "/var/run:/var/run:ro"]
        assert not driver.inspect("cadvisor")["HostConfig"].get("PortBindings")
        name = driver.inspect(LOADED)["Name"].lstrip("/")
        url = f"http://{driver.address('cadvisor')}:{rendering_port(driver)}"
        assert http_get(f"{url}/healthz") == (200, "ok")

        def scrape() -> str:
            status, body = http_get(f"{url}/metrics", timeout_s=10)
            assert status == 200
            return body

        wait_until(lambda: bool(_series(scrape(), "container_cpu_usage_seconds_total", name)), timeout_s=30,
                   what=f"cAdvisor's series for {name}")
        # One core's worth of work for a few seconds, inside the container's 1-CPU limit.
        driver.exec(LOADED, ["sh", "-c", "timeout 8 python3 -c 'while True: pass' >/dev/null 2>&1 &"])
        first = scrape()
        t0 = time.monotonic()
        time.sleep(3 * SCRAPE_S)  # two housekeeping rounds: the counter moves
        second = scrape()
        elapsed = time.monotonic() - t0
        (usage0,), (usage1,) = (_series(x, "container_cpu_usage_seconds_total", name) for x in (first, second))
        (quota,) = _series(second, "container_spec_cpu_quota", name)
        (period,) = _series(second, "container_spec_cpu_period", name)
        (memory,) = _series(second, "container_memory_working_set_bytes", name)
        (limit,) = _series(second, "container_spec_memory_limit_bytes", name)
        inputs = driver.step(LOADED).inputs
        # The limits are the rendered ones: cpus as quota per period, memory in bytes.
        assert float(quota["value"]) / float(period["value"]) == pytest.approx(float(inputs["cpus"]))
        assert float(limit["value"]) == inputs["memory"] * 2**20
        assert 0 < float(memory["value"]) < float(limit["value"])
        used = (float(usage1["value"]) - float(usage0["value"])) / elapsed
        assert used > 0
        # The labels: the container's name and the stack's own labels, no other container label.
        assert {k for k in usage1 if k.startswith("container_label_")} == {
            "container_label_banyan_project", "container_label_banyan_stack", "container_label_banyan_part",
            "container_label_banyan_instance"}
        rendered_labels = {x["label"]: x["value"] for x in inputs["labels"]}
        for key in ("banyan.project", "banyan.stack", "banyan.part", "banyan.instance"):
            assert usage1["container_label_" + key.replace(".", "_")] == rendered_labels[key], key
        measured(f"cAdvisor: {LOADED} ({inputs['cpus']} CPU, {inputs['memory']} MiB) up with cAdvisor in {up_s:.1f}s;"
                 f" busy loop at {used / float(inputs['cpus']) * 100:.0f} % of its CPU limit, working set "
                 f"{float(memory['value']) / 2**20:.0f} MiB of {inputs['memory']} MiB")
    finally:
        driver.down(volumes=True)


def rendering_port(driver: StackDriver) -> int:
    """cAdvisor's port, from its rendered command line."""
    command = driver.step("cadvisor").inputs["command"]
    return int(next(a for a in command if a.startswith("-port=")).split("=", 1)[1])

