"""The restore drill: restore the newest backup (or a point in time) into a throwaway PostgreSQL beside the stack,
check it, print the recovery point and how long the restore took, and remove it.

    .venv/bin/python -m tooling.drill dev                                # the latest point
    .venv/bin/python -m tooling.drill dev --target-time 2026-12-01T10:30:00Z

Docker: the throwaway server runs inside the stack's backup container (`<project>-<stack>-postgres-backup`), from
a scratch directory of the backup volume, on a socket of its own (no TCP, no archiving); the script there
(`banyan-backup.sh drill`, components/postgres/backup.py) restores with pgBackRest, waits for recovery to end, and
reports. This module runs it through `docker exec` (DOCKER_HOST as the docker CLI reads it), compares the tables
with the live primary's and checks the recovery point against the target. Exit status 0: the drill passed.
Kubernetes: see the README ("Restore drill"); CloudNativePG restores into a new Cluster, which this prints.
"""

from __future__ import annotations

import argparse
import datetime
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from components.postgres import backup as pg_backup
from model.spec import PlatformSpec

Runner = Callable[[Sequence[str]], str]


@dataclass(frozen=True)
class DrillReport:
    """What the drill instance found: `drill_*` lines of the backup script."""

    status: str
    target: str
    recovery_point: datetime.datetime | None
    timeline: int | None
    restore_ms: int
    tables: dict[str, int] = field(default_factory=dict)


def parse(output: str) -> DrillReport:
    values: dict[str, str] = {}
    tables: dict[str, int] = {}
    for line in output.splitlines():
        key, sep, value = line.partition("=")
        if not sep or not key.startswith("drill_"):
            continue
        if key == "drill_table":
            name, _, count = value.rpartition("=")
            tables[name] = int(count)
        else:
            values[key] = value
    if "drill_status" not in values:
        raise ValueError("the drill printed no result (drill_status); its output:\n" + output[-2000:])
    point = values.get("drill_recovery_point") or ""
    timeline = values.get("drill_timeline") or ""
    return DrillReport(
        status=values["drill_status"],
        target=values.get("drill_target", "latest"),
        recovery_point=_timestamp(point) if point else None,
        timeline=int(timeline) if timeline.isdigit() else None,
        restore_ms=int(values.get("drill_restore_ms", "0")),
        tables=tables,
    )


def _timestamp(text: str) -> datetime.datetime:
    """PostgreSQL's timestamptz text ('2026-12-01 10:30:00.123+00') or RFC 3339."""
    text = text.strip().replace(" ", "T", 1)
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    if len(text) >= 3 and text[-3] in "+-" and text[-3:].lstrip("+-").isdigit():
        text += ":00"
    return datetime.datetime.fromisoformat(text)


def check(report: DrillReport, *, target_time: str | None, live_tables: Sequence[str] | None) -> list[str]:
    """Why the drill failed (empty: it passed). A restore to the latest point must hold every table the live
    primary has; to a time, its newest transaction must not be later than that time."""
    failures = []
    if report.status != "restored":
        failures.append(f"the drill instance did not come up restored (status {report.status!r})")
    if target_time is not None:
        target = _timestamp(target_time)
        if report.recovery_point is None:
            failures.append(f"no transaction was replayed up to {target_time}: the backup holds nothing before it")
        elif report.recovery_point > target:
            failures.append(f"the newest transaction restored ({report.recovery_point.isoformat()}) is later "
                            f"than the target {target_time}")
    elif live_tables is not None:
        missing = sorted(set(live_tables) - set(report.tables))
        if missing:
            failures.append(f"tables of the live database missing from the latest backup: {', '.join(missing)}")
    return failures


TABLES_QUERY = "SELECT format('%I.%I', schemaname, relname) FROM pg_stat_user_tables ORDER BY 1"


def run(backup: Runner, primary: Runner | None, *, database: str,
        target_time: str | None) -> tuple[DrillReport, list[str], float]:
    """The drill through `backup` (runs a command in the backup container), the live tables through `primary`."""
    started = time.monotonic()
    argv = [pg_backup.BACKUP_SCRIPT, "drill", *([pg_backup.pgbackrest_time(target_time)] if target_time else [])]
    report = parse(backup(argv))
    took = time.monotonic() - started
    live = None
    if primary is not None:
        out = primary(["psql", "-X", "-A", "-t", "-q", "-w", "-U", "postgres", "-d", database, "-c", TABLES_QUERY])
        live = [line for line in out.splitlines() if line]
    return report, check(report, target_time=target_time, live_tables=live), took


def summary(report: DrillReport, failures: Sequence[str], took_s: float) -> str:
    point = report.recovery_point.isoformat() if report.recovery_point else "none (no transaction replayed)"
    lines = [
        f"restore drill, target {report.target}: {'PASSED' if not failures else 'FAILED'}",
        f"  recovery point (newest transaction restored): {point}",
        f"  restore and recovery took {report.restore_ms / 1000:.2f} s ({took_s:.2f} s with checks and cleanup)",
        f"  timeline after recovery: {report.timeline}",
        *(f"  table {name}: {count} rows" for name, count in sorted(report.tables.items())),
        *(f"  FAILED: {why}" for why in failures),
    ]
    return "\n".join(lines)


def _docker(container: str) -> Runner:
    def runner(argv: Sequence[str]) -> str:
        done = subprocess.run(["docker", "exec", container, *argv], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"docker exec {container} {' '.join(argv)} exited {done.returncode}:\n"
                             f"{done.stderr[-4000:]}")
        return done.stdout
    return runner


def load_stack_spec(stack: str) -> PlatformSpec:
    """The stack's resolved spec, from its stack file as the plan reads it."""
    from infra.program import load_spec
    from testkit.render import PROJECT_DIR, project_name, read_stack_file, to_engine_config

    raw, secret = to_engine_config(read_stack_file(stack, PROJECT_DIR))
    return load_spec(raw, project=project_name(PROJECT_DIR), stack=stack, secret_keys=secret)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tooling.drill", description=__doc__.split("\n\n")[0])
    parser.add_argument("stack", help="the stack whose backups to drill (dev, prod, ...)")
    parser.add_argument("--target-time", help="restore up to this time (RFC 3339 with a zone); default: latest")
    args = parser.parse_args(argv)
    spec = load_stack_spec(args.stack)
    pg = spec.postgres
    if pg.backup is None:
        print(f"stack {args.stack}: banyan:postgres.backup is off; there is nothing to drill", file=sys.stderr)
        return 2
    if spec.target == "kubernetes":
        print(kubernetes_drill(spec, args.target_time))
        return 0
    prefix = f"{spec.project}-{spec.stack}-"
    report, failures, took = run(_docker(prefix + pg.backup_name), _docker(prefix + pg.primary_name),
                                 database=pg.database, target_time=args.target_time)
    print(summary(report, failures, took))
    return 1 if failures else 0


def kubernetes_drill(spec: PlatformSpec, target_time: str | None) -> str:
    """The drill on Kubernetes: a second Cluster bootstrapped from the same store, checked, deleted (printed)."""
    from components.postgres import backup_kubernetes as bk
    from components.postgres.kubernetes import operand_image

    pg, namespace, cluster = spec.postgres, spec.kubernetes.namespace, spec.postgres.name
    assert pg.backup is not None
    target = f"\n      recoveryTarget: {{targetTime: '{target_time}'}}" if target_time else ""
    end = "EOF"
    return f"""CloudNativePG restores into a new Cluster. Apply this beside the stack, wait for it, check it, delete it:

kubectl -n {namespace} apply -f - <<'{end}'
apiVersion: postgresql.cnpg.io/v1
kind: Cluster
metadata: {{name: {cluster}-drill}}
spec:
  instances: 1
  imageName: {operand_image(pg)}
  storage: {{size: {pg.storage_gib}Gi}}
  bootstrap:
    recovery:
      source: origin
      database: {pg.database}
      owner: {pg.user}{target}
  externalClusters:
    - name: origin
      plugin:
        name: {bk.PLUGIN_NAME}
        parameters: {{barmanObjectName: {bk.object_store_name(pg)}, serverName: {pg.backup.server_name}}}
{end}
time kubectl -n {namespace} wait cluster/{cluster}-drill --for=condition=Ready --timeout=2h
kubectl -n {namespace} exec {cluster}-drill-1 -c postgres -- psql -d {pg.database} -Atc \\
  "SELECT now(), pg_last_xact_replay_timestamp(); SELECT relname, n_live_tup FROM pg_stat_user_tables"
kubectl -n {namespace} delete cluster {cluster}-drill

The drill Cluster archives nothing (it has no plugins entry) and its volume goes with it. Its pods carry
cnpg.io/cluster={cluster}-drill, which the stack's NetworkPolicies do not admit: where they block it from the
store, run it in a namespace of its own."""


if __name__ == "__main__":
    raise SystemExit(main())
