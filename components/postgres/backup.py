"""PostgreSQL backups on Docker, rendered from the spec: pgBackRest's configuration, the archiving settings the
primary adds to postgresql.conf, and the script of the backup container (scheduled full backups, the archive's
metrics, the restore drill). Pure: spec -> text.

Why pgBackRest: it is what people running PostgreSQL on their own hosts use for exactly this (WAL archiving with
point-in-time recovery, retention by recovery window, parallel compressed backups, checksummed restores, S3 and
plain directories as repositories, from one C binary in Debian's `pgbackrest` package); Barman, the other
Debian-packaged tool, is a separate backup server that pulls over SSH or streaming replication, one more host
to run. And it bounds the primary's disk when the archive fails: with asynchronous archiving, WAL waiting for a
broken repository is dropped past `archive-push-queue-max` (the alert says the archive has a gap) instead of
filling pg_wal until the primary stops.

The backup container runs the same image as the primary beside it, shares its data volume (pgBackRest reads
the data directory and connects over the socket pgBackRest and PostgreSQL share on that volume) and owns the
repository volume. The primary pushes WAL itself (archive_command)."""

from __future__ import annotations

import datetime
import shlex
from dataclasses import dataclass
from urllib.parse import urlsplit

from components.shell import drop_privileges
from model.spec import BackupSpec, PostgresSpec, RestoreSpec

PGBACKREST_CONF = "/etc/pgbackrest/pgbackrest.conf"
BACKUP_SCRIPT = "/usr/local/bin/banyan-backup.sh"
# The backup volume: the local repository (when the repository is not S3), the metrics file, drill scratch.
BACKUP_MOUNT = "/var/lib/pgbackrest"
LOCAL_REPO_PATH = f"{BACKUP_MOUNT}/repo"
METRICS_DIR = f"{BACKUP_MOUNT}/metrics"
# For a node_exporter textfile collector (*.prom), and the same text served over HTTP as text/plain (Prometheus
# reads the text format by its content type) on METRICS_PORT, where python3 is in the image.
METRICS_FILE = f"{METRICS_DIR}/postgres_backup.prom"
METRICS_HTTP_PATH = "/metrics.txt"
METRICS_PORT = 9188
# The drill's throwaway instance: a socket-only server on this port, in a directory removed afterwards.
DRILL_PORT = 55432
# How often the backup container looks at the archive and the newest backup.
POLL_S = 30
# pgBackRest's variables for the S3 keys: they stay in the environment (secrets), never in the uploaded file.
S3_KEY_ENV = "PGBACKREST_REPO1_S3_KEY"
S3_SECRET_ENV = "PGBACKREST_REPO1_S3_KEY_SECRET"


@dataclass(frozen=True)
class BackupPaths:
    """Paths on the primary's data volume that the backup container shares."""

    mount: str
    pgdata: str

    @property
    def socket_dir(self) -> str:
        """A second socket directory of the primary, on the shared volume (the first is the image's own)."""
        return f"{self.mount}/run"

    @property
    def spool(self) -> str:
        """pgBackRest's asynchronous archive queue: on the primary's volume, and bounded there."""
        return f"{self.mount}/pgbackrest-spool"


def _backup(spec: PostgresSpec) -> BackupSpec:
    if spec.backup is None:
        raise ValueError("postgres backups are off in this spec")
    return spec.backup


def archive_settings(spec: PostgresSpec, paths: BackupPaths) -> list[str]:
    """postgresql.conf lines for WAL archiving (archive_mode needs a restart: set with the server's first start)."""
    backup = _backup(spec)
    command = f"pgbackrest --config={PGBACKREST_CONF} --stanza={backup.server_name} archive-push %p"
    return [
        "# WAL archiving to the backup repository (pgBackRest); a switch at least every minute bounds what a",
        "# restore can lose to one minute of writes",
        "archive_mode = on",
        f"archive_command = '{command}'",
        "archive_timeout = 60",
        "",
    ]


def _s3_lines(backup: BackupSpec) -> list[str]:
    assert backup.repository is not None
    parts = urlsplit(backup.repository)
    lines = ["repo1-type=s3", f"repo1-s3-bucket={parts.netloc}", f"repo1-path={parts.path.rstrip('/') or '/'}",
             f"repo1-s3-region={backup.region}"]
    if backup.endpoint_url:
        endpoint = urlsplit(backup.endpoint_url)
        lines += [f"repo1-s3-endpoint={endpoint.hostname}",
                  # S3-compatible stores serve the bucket under the path, not as a virtual host.
                  "repo1-s3-uri-style=path"]
        if endpoint.port:
            lines.append(f"repo1-storage-port={endpoint.port}")
    else:
        lines.append(f"repo1-s3-endpoint=s3.{backup.region}.amazonaws.com")
    return lines


def render_pgbackrest_conf(spec: PostgresSpec, paths: BackupPaths, *, takes_backups: bool = False) -> str:
    """pgBackRest's configuration: the PostgreSQL containers' (archive-push, restore), and with `takes_backups` the
    backup container's, which adds the retention its backups expire by. A retention change thus restarts no
    server."""
    backup = _backup(spec)
    repo = _s3_lines(backup) if backup.repository else ["repo1-type=posix", f"repo1-path={LOCAL_REPO_PATH}"]
    # The recovery window: full backups (and the WAL after them) are kept while needed to reach any point of the
    # last N days.
    retention = ["repo1-retention-full-type=time", f"repo1-retention-full={backup.retention_days}",
                 "start-fast=y"] if takes_backups else []
    lines = [
        f"# pgBackRest for PostgreSQL {spec.version}; rendered from the stack spec.",
        "[global]",
        *repo,
        *retention,
        "archive-async=y",
        f"spool-path={paths.spool}",
        # Past this much WAL waiting for a failing repository, pgBackRest drops it and reports it archived: the
        # primary's volume stays bounded, and the archive has a gap the alert reports.
        f"archive-push-queue-max={backup.max_wal_backlog_mib * 1024 * 1024}",
        "log-level-console=info",
        "log-level-stderr=warn",
        "log-level-file=off",
        "",
        f"[{backup.server_name}]",
        f"pg1-path={paths.pgdata}",
        f"pg1-port={spec.port}",
        f"pg1-socket-path={paths.socket_dir}",
        "pg1-user=postgres",
        "",
    ]
    return "\n".join(lines)


def pgbackrest_time(rfc3339: str) -> str:
    """An RFC 3339 time as pgBackRest's --target takes it (`YYYY-MM-DD HH:MM:SS.ffffff+00`, in UTC): it picks the
    backup set from it, and writes it as recovery_target_time, which PostgreSQL reads the same way."""
    moment = datetime.datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).astimezone(datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f") + "+00"


def restore_options(restore: RestoreSpec) -> list[str]:
    """pgbackrest restore's recovery target: the end of the archive, or a time (then promote there)."""
    if restore.target_time is None:
        return ["--type=default"]
    return ["--type=time", f"--target={pgbackrest_time(restore.target_time)}", "--target-action=promote"]


def metrics_query() -> str:
    """The archiver's state, as the metrics file reports it (one line: archived|failed|last ok|last failure|failing).
    Failing: the last attempt failed (its failure is newer than the last success), CloudNativePG's own test."""
    return ("SELECT archived_count, failed_count, "
            "coalesce(floor(extract(epoch FROM last_archived_time)), 0)::bigint, "
            "coalesce(floor(extract(epoch FROM last_failed_time)), 0)::bigint, "
            "(last_failed_time IS NOT NULL "
            "AND (last_archived_time IS NULL OR last_failed_time > last_archived_time))::int "
            "FROM pg_stat_archiver")


def render_backup_script(spec: PostgresSpec, paths: BackupPaths) -> str:
    """The backup container's entrypoint: `run` (the default: create the stanza, then take a full backup whenever the
    newest is older than the schedule, and write the metrics file every POLL_S seconds), `backup`, `metrics`, and
    `drill [target-time]` (restore into a throwaway instance, check it, print what it found, remove it)."""
    backup = _backup(spec)
    values = {
        "stanza": backup.server_name,
        "conf": PGBACKREST_CONF,
        "socket_dir": paths.socket_dir,
        "port": str(spec.port),
        "version": str(spec.version),
        "database": spec.database,
        "full_every_s": str(backup.full_backup_hours * 3600),
        "metrics_dir": METRICS_DIR,
        "metrics_file": METRICS_FILE,
        "local_repo": LOCAL_REPO_PATH if backup.repository is None else "",
        "drill_port": str(DRILL_PORT),
        "drill_root": f"{BACKUP_MOUNT}/drill",
        "poll_s": str(POLL_S),
        "metrics_port": str(METRICS_PORT),
        "metrics_http": METRICS_DIR + METRICS_HTTP_PATH,
    }
    assign = "\n".join(f"{k}={shlex.quote(v)}" for k, v in values.items())
    return f"""#!/bin/sh
# banyan's backup container for {spec.name}, rendered from the stack spec (components/postgres/backup.py).
set -eu

{assign}

log() {{ printf 'backup: %s\\n' "$*" >&2; }}

if ! command -v initdb >/dev/null 2>&1 && [ -x "/usr/lib/postgresql/$version/bin/initdb" ]; then
	PATH="/usr/lib/postgresql/$version/bin:$PATH"
	export PATH
fi
for tool in pgbackrest psql pg_ctl postgres; do
	command -v "$tool" >/dev/null 2>&1 || {{ log "no $tool on PATH: this image cannot take backups"; exit 1; }}
done

{drop_privileges("postgres", log="log")}as_postgres() {{ $drop "$@"; }}
pgbr() {{ as_postgres pgbackrest --config="$conf" --stanza="$stanza" "$@"; }}
sql() {{
	as_postgres psql -X -A -t -q -w -v ON_ERROR_STOP=1 -h "$socket_dir" -p "$port" -U postgres -d postgres -c "$1"
}}

# The newest full backup's end, in seconds since the epoch (0: none). pgBackRest's JSON names each backup's
# start and stop times as numbers; the LSNs of the same name are strings and do not match.
newest_backup() {{
	pgbr --output=json info 2>/dev/null | grep -o '"stop":[0-9]*' | cut -d: -f2 | sort -n | tail -n 1 | grep . || echo 0
}}

write_metrics() {{
	now=$(date +%s)
	line=$(sql "{metrics_query()}" 2>/dev/null) || line=""
	last_backup=$(newest_backup)
	tmp="$metrics_file.tmp"
	{{
		echo "# HELP banyan_postgres_backup_metrics_timestamp_seconds When the backup container last wrote this file."
		echo "# TYPE banyan_postgres_backup_metrics_timestamp_seconds gauge"
		echo "banyan_postgres_backup_metrics_timestamp_seconds $now"
		echo "# HELP banyan_postgres_backup_last_full_timestamp_seconds End of the newest full base backup (0: none)."
		echo "# TYPE banyan_postgres_backup_last_full_timestamp_seconds gauge"
		echo "banyan_postgres_backup_last_full_timestamp_seconds $last_backup"
		echo "# HELP banyan_postgres_backup_last_run_success Whether the last base backup attempt succeeded."
		echo "# TYPE banyan_postgres_backup_last_run_success gauge"
		echo "banyan_postgres_backup_last_run_success $(cat "$metrics_dir/last_run_ok" 2>/dev/null || echo 1)"
		if [ -n "$line" ]; then
			IFS='|' read -r archived failed last_ok last_failed failing <<EOF
$line
EOF
			echo "# HELP banyan_postgres_wal_archived_total WAL files archived (pg_stat_archiver.archived_count)."
			echo "# TYPE banyan_postgres_wal_archived_total counter"
			echo "banyan_postgres_wal_archived_total $archived"
			echo "# HELP banyan_postgres_wal_archive_failed_total Failed archive attempts (pg_stat_archiver)."
			echo "# TYPE banyan_postgres_wal_archive_failed_total counter"
			echo "banyan_postgres_wal_archive_failed_total $failed"
			echo "# HELP banyan_postgres_wal_last_archived_timestamp_seconds Last successful archive (0: never)."
			echo "# TYPE banyan_postgres_wal_last_archived_timestamp_seconds gauge"
			echo "banyan_postgres_wal_last_archived_timestamp_seconds $last_ok"
			echo "# HELP banyan_postgres_wal_archive_failing 1 while the archiver's last attempt failed."
			echo "# TYPE banyan_postgres_wal_archive_failing gauge"
			echo "banyan_postgres_wal_archive_failing $failing"
		fi
		echo "# HELP banyan_postgres_up Whether the backup container reached the primary."
		echo "# TYPE banyan_postgres_up gauge"
		echo "banyan_postgres_up $([ -n "$line" ] && echo 1 || echo 0)"
		if [ -n "$local_repo" ] && [ -d "$local_repo" ]; then
			echo "# HELP banyan_postgres_backup_repository_bytes Disk used by the local repository."
			echo "# TYPE banyan_postgres_backup_repository_bytes gauge"
			echo "banyan_postgres_backup_repository_bytes $(( $(du -sk "$local_repo" | cut -f1) * 1024 ))"
		fi
	}} >"$tmp"
	cp -f "$tmp" "$metrics_http.new"
	mv -f "$metrics_http.new" "$metrics_http"
	mv -f "$tmp" "$metrics_file"
}}

serve_metrics() {{
	if command -v python3 >/dev/null 2>&1; then
		# A static file server of the metrics directory; the server stops with the container.
		(cd "$metrics_dir" && exec $drop python3 -m http.server --bind 0.0.0.0 "$metrics_port") >/dev/null 2>&1 &
	else
		log "no python3 in this image: the metrics stay in $metrics_file (for a node_exporter textfile collector)"
	fi
}}

take_backup() {{
	log "full backup of $stanza starting"
	started=$(date +%s)
	if pgbr --type=full backup; then
		echo 1 >"$metrics_dir/last_run_ok"
		log "full backup of $stanza done in $(( $(date +%s) - started )) s"
	else
		echo 0 >"$metrics_dir/last_run_ok"
		log "full backup of $stanza failed"
		return 1
	fi
}}

prepare() {{
	mkdir -p "$metrics_dir" "$drill_root" ${{local_repo:+"$local_repo"}}
	if [ "$(id -u)" = 0 ]; then chown postgres:postgres "$metrics_dir" "$drill_root" ${{local_repo:+"$local_repo"}}; fi
}}

wait_for_primary() {{
	until sql "SELECT 1" >/dev/null 2>&1; do
		write_metrics || :
		sleep 5
	done
}}

ensure_stanza() {{
	# Idempotent: an existing stanza of this cluster is accepted as it is.
	until pgbr stanza-create; do
		log "stanza-create failed; retrying in $poll_s s"
		write_metrics || :
		sleep "$poll_s"
	done
}}

run() {{
	prepare
	write_metrics || :
	serve_metrics
	wait_for_primary
	ensure_stanza
	# A backup runs in the background (hours, on a large database) while the metrics stay fresh.
	running="$metrics_dir/backup.running"
	rm -f "$running"
	bg=
	while :; do
		if [ -n "$bg" ] && [ ! -e "$running" ]; then
			wait "$bg" || :
			bg=
		fi
		if [ -z "$bg" ] && [ $(( $(date +%s) - $(newest_backup) )) -ge "$full_every_s" ]; then
			touch "$running"
			( take_backup || :; rm -f "$running" ) &
			bg=$!
		fi
		write_metrics || log "writing $metrics_file failed"
		sleep "$poll_s"
	done
}}

# The restore drill: the backup (latest, or up to a time) restored into a throwaway directory, started as a
# socket-only server on its own port, checked, stopped and removed. Prints key=value lines for tooling/drill.py.
drill() {{
	target=${{1:-}}
	prepare
	dir="$drill_root/$(date +%s)-$$"
	data="$dir/pgdata"
	cleanup() {{
		as_postgres pg_ctl -D "$data" -m immediate -w stop >/dev/null 2>&1 || :
		rm -rf "$dir"
	}}
	trap cleanup EXIT INT TERM
	mkdir -p "$dir"
	if [ "$(id -u)" = 0 ]; then chown postgres:postgres "$dir"; fi
	started=$(date +%s%N)
	if [ -n "$target" ]; then
		set -- --type=time "--target=$target" --target-action=promote
	else
		set -- --type=default
	fi
	# Throwaway: it archives nothing (archive-mode=off), fetches WAL without the primary's spool, listens on a
	# socket of its own only, and recovers without hot standby (no parameter has to match the primary's).
	mkdir -m 0700 "$data"
	if [ "$(id -u)" = 0 ]; then chown postgres:postgres "$data"; fi
	# pgBackRest checks that the server's data directory is pg1-path: the drill's, not the primary's.
	restore_command="pgbackrest --config=$conf --stanza=$stanza --pg1-path=$data --archive-async=n"
	restore_command="$restore_command archive-get %f \\"%p\\""
	pgbr --pg1-path="$data" "$@" --archive-mode=off \\
		--recovery-option="restore_command=$restore_command" \\
		restore >&2
	as_postgres pg_ctl -D "$data" -w -t 3600 -l "$dir/server.log" \\
		-o "-c listen_addresses='' -c port=$drill_port -c unix_socket_directories=$dir -c hot_standby=off" \\
		start >&2 || {{ cat "$dir/server.log" >&2; exit 1; }}
	q() {{ as_postgres psql -X -A -t -q -w -v ON_ERROR_STOP=1 -h "$dir" -p "$drill_port" -U postgres -d "$1" -c "$2"; }}
	# Without hot standby the server accepts connections only once recovery is over and it has promoted (pg_ctl
	# counts a standby as started).
	until [ "$(q postgres 'SELECT pg_is_in_recovery()' 2>/dev/null)" = f ]; do
		as_postgres pg_ctl -D "$data" status >/dev/null 2>&1 || {{ cat "$dir/server.log" >&2; exit 1; }}
		sleep 1
	done
	took_ms=$(( ($(date +%s%N) - started) / 1000000 ))
	echo "drill_restore_ms=$took_ms"
	echo "drill_target=${{target:-latest}}"
	echo "drill_recovery_point=$(q postgres "SELECT coalesce(pg_last_xact_replay_timestamp()::text, '')")"
	echo "drill_timeline=$(q postgres 'SELECT timeline_id FROM pg_control_checkpoint()')"
	for table in $(q "$database" "SELECT format('%I.%I', schemaname, relname) FROM pg_stat_user_tables ORDER BY 1"); do
		echo "drill_table=$table=$(q "$database" "SELECT count(*) FROM $table")"
	done
	echo "drill_status=restored"
}}

case "${{1:-run}}" in
	run) run ;;
	backup) prepare; ensure_stanza; take_backup; write_metrics ;;
	metrics) prepare; write_metrics; cat "$metrics_file" ;;
	drill) shift; drill "${{1:-}}" ;;
	*) log "usage: $0 [run|backup|metrics|drill [target-time]]"; exit 2 ;;
esac
"""
