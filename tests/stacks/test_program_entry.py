"""The program runs the way Pulumi starts it: infra/ as working directory and sys.path[0], via runpy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from testkit import PROJECT_DIR, apply_sets, read_stack_file, to_engine_config

# Loads the mock harness, then forgets the project root and every project module, so that the
# program must find its own packages exactly as under `pulumi up` (runpy.run_path(".") in infra/).
BOOTSTRAP = textwrap.dedent(
    """
    import json, os, runpy, sys
    root = os.environ["BANYAN_ROOT"]
    sys.path.insert(0, root)
    from testkit import render_program
    sys.path.remove(root)
    for name in [m for m in sys.modules if m.split(".")[0] in ("infra", "components", "model")]:
        del sys.modules[name]
    assert os.getcwd() == os.path.join(root, "infra")
    sys.path.insert(0, os.getcwd())
    raw = json.loads(os.environ["PULUMI_CONFIG"])
    secret = frozenset(json.loads(os.environ.get("PULUMI_CONFIG_SECRET_KEYS", "[]")))
    try:
        rendering = render_program(lambda: runpy.run_path("."), raw, project="banyan", stack="dev",
                                   secret_keys=secret)
    except BaseException as exc:
        import pulumi
        print(json.dumps({"error": str(exc), "run_error": isinstance(exc, pulumi.RunError)}))
    else:
        print(json.dumps({"resources": len(rendering.resources), "outputs": sorted(rendering.stack_outputs)}))
    """
)


def run_like_pulumi(sets: dict[str, object]) -> dict[str, object]:
    raw, secret = to_engine_config(apply_sets(read_stack_file("dev"), sets))
    env = {**os.environ, "BANYAN_ROOT": str(PROJECT_DIR), "PULUMI_CONFIG": json.dumps(raw),
           "PULUMI_CONFIG_SECRET_KEYS": json.dumps(sorted(secret))}
    env.pop("PYTHONPATH", None)
    done = subprocess.run([sys.executable, "-c", BOOTSTRAP], cwd=PROJECT_DIR / "infra", env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_dev_stack_renders_from_the_infra_directory() -> None:
    result = run_like_pulumi({})
    assert "error" not in result, result
    assert "public_url" in result["outputs"]  # type: ignore[operator]
    assert result["resources"] > 0  # type: ignore[operator]


def test_bad_config_is_a_run_error_with_no_resources() -> None:
    result = run_like_pulumi({"tier": "huge"})
    assert result["run_error"] is True
    assert "banyan:tier" in str(result["error"])


def test_started_by_hand_outside_the_engine_it_says_how_to_run_it_without_a_traceback() -> None:
    for argv, cwd in (([sys.executable, "infra/__main__.py"], PROJECT_DIR),
                      ([sys.executable, "."], PROJECT_DIR / "infra")):
        result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 2, (argv, result.stderr)
        assert result.stderr.startswith("banyan: this is the Pulumi program of the project; the engine runs it")
        assert "Traceback" not in result.stderr and "tooling.plan dev" in result.stderr
