"""The Pod Security Standards' "restricted" profile (baseline included) as plain checks over a pod spec, for
tests of rendered workloads; the API server's admission plugin is the authority (tests/e2e/apiserver).

Follows https://kubernetes.io/docs/concepts/security/pod-security-standards/ for the Linux controls of the
versions this project targets (1.33); Windows-only controls (hostProcess aside) are left out.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

# Volume types the restricted profile allows.
ALLOWED_VOLUME_TYPES = frozenset({"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
                                  "persistentVolumeClaim", "projected", "secret"})
# The one capability a restricted container may add (after dropping ALL).
ALLOWED_ADDED_CAPABILITIES = frozenset({"NET_BIND_SERVICE"})
ALLOWED_SECCOMP = frozenset({"RuntimeDefault", "Localhost"})
ALLOWED_APPARMOR = frozenset({"RuntimeDefault", "Localhost"})
ALLOWED_SELINUX_TYPES = frozenset({"container_t", "container_init_t", "container_kvm_t", "container_engine_t"})
SAFE_SYSCTLS = frozenset({"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range",
                          "net.ipv4.ip_unprivileged_port_start", "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range",
                          "net.ipv4.ip_local_reserved_ports", "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout",
                          "net.ipv4.tcp_keepalive_intvl", "net.ipv4.tcp_keepalive_probes"})
# Kinds whose pod template the stack declares, and where the template is.
POD_TEMPLATE_PATHS: Mapping[str, tuple[str, ...]] = {
    "Deployment": ("spec", "template"), "StatefulSet": ("spec", "template"), "DaemonSet": ("spec", "template"),
    "ReplicaSet": ("spec", "template"), "Job": ("spec", "template"),
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
}


def pod_template(obj: Mapping[str, Any]) -> dict[str, Any] | None:
    """The pod template of a workload object (plain data), or None for any other kind."""
    path = POD_TEMPLATE_PATHS.get(str(obj.get("kind")))
    if path is None:
        return None
    node: Any = obj
    for step in path:
        node = node[step]
    template: dict[str, Any] = node
    return template


def _containers(pod: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for field in ("initContainers", "containers", "ephemeralContainers"):
        for container in pod.get(field) or []:
            yield f"{field}[{container.get('name')}]", container


def violations(pod: Mapping[str, Any]) -> list[str]:
    """Every way a pod spec departs from the restricted profile; empty when it would be admitted."""
    problems: list[str] = []
    pod_ctx: Mapping[str, Any] = pod.get("securityContext") or {}
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(field):
            problems.append(f"{field}: true")
    for volume in pod.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if not kinds <= ALLOWED_VOLUME_TYPES:
            problems.append(f"volume {volume.get('name')}: type {sorted(kinds - ALLOWED_VOLUME_TYPES)} not allowed")
    for sysctl in pod_ctx.get("sysctls") or []:
        if sysctl.get("name") not in SAFE_SYSCTLS:
            problems.append(f"sysctl {sysctl.get('name')} not allowed")
    problems += [f"pod: {p}" for p in _context_problems(pod_ctx)]
    pod_non_root = pod_ctx.get("runAsNonRoot") is True
    pod_seccomp = (pod_ctx.get("seccompProfile") or {}).get("type")
    for where, container in _containers(pod):
        ctx: Mapping[str, Any] = container.get("securityContext") or {}
        problems += [f"{where}: {p}" for p in _context_problems(ctx)]
        if ctx.get("privileged"):
            problems.append(f"{where}: privileged")
        if ctx.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{where}: allowPrivilegeEscalation must be false")
        non_root = ctx.get("runAsNonRoot")
        if non_root is False or (non_root is not True and not pod_non_root):
            problems.append(f"{where}: runAsNonRoot must be true (pod or container)")
        seccomp = (ctx.get("seccompProfile") or {}).get("type")
        if seccomp is None and pod_seccomp not in ALLOWED_SECCOMP:
            problems.append(f"{where}: seccompProfile must be RuntimeDefault or Localhost (pod or container)")
        capabilities: Mapping[str, Any] = ctx.get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            problems.append(f"{where}: capabilities must drop ALL")
        added = set(capabilities.get("add") or []) - ALLOWED_ADDED_CAPABILITIES
        if added:
            problems.append(f"{where}: capabilities added beyond NET_BIND_SERVICE: {sorted(added)}")
        for port in container.get("ports") or []:
            if port.get("hostPort"):
                problems.append(f"{where}: hostPort {port['hostPort']}")
    if not any(True for _ in _containers(pod)):
        problems.append("no containers")
    return problems


def _context_problems(ctx: Mapping[str, Any]) -> list[str]:
    """The controls a pod-level and a container-level security context share."""
    problems = []
    if ctx.get("runAsUser") == 0:
        problems.append("runAsUser 0 (root)")
    seccomp = (ctx.get("seccompProfile") or {}).get("type")
    if seccomp is not None and seccomp not in ALLOWED_SECCOMP:
        problems.append(f"seccompProfile {seccomp} not allowed")
    apparmor = (ctx.get("appArmorProfile") or {}).get("type")
    if apparmor is not None and apparmor not in ALLOWED_APPARMOR:
        problems.append(f"appArmorProfile {apparmor} not allowed")
    selinux: Mapping[str, Any] = ctx.get("seLinuxOptions") or {}
    if selinux.get("type") not in (None, "", *ALLOWED_SELINUX_TYPES):
        problems.append(f"seLinuxOptions.type {selinux['type']} not allowed")
    if selinux.get("user") or selinux.get("role"):
        problems.append("seLinuxOptions.user/role must be unset")
    if ctx.get("procMount") not in (None, "Default"):
        problems.append(f"procMount {ctx['procMount']} not allowed")
    if (ctx.get("windowsOptions") or {}).get("hostProcess"):
        problems.append("windowsOptions.hostProcess")
    return problems
