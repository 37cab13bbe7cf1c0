"""Shell fragments the parts' entrypoint scripts share (rendered into each script, so every file is whole)."""

from __future__ import annotations


def drop_privileges(user: str, *, log: str) -> str:
    """Sets `drop` to the command prefix that runs a command as `user` (empty when not root): gosu (the
    official Debian-based images), su-exec (the Alpine ones) or setpriv (util-linux, in every Debian image),
    the last with the user's HOME as the other two set it. Fixed words, so `$drop cmd` splits safely unquoted.
    `log` is the script's own way to report, given the message as one argument."""
    return f"""if [ "$(id -u)" != 0 ]; then
    drop=
elif command -v gosu >/dev/null 2>&1; then
    drop="gosu {user}"
elif command -v su-exec >/dev/null 2>&1; then
    drop="su-exec {user}"
elif command -v setpriv >/dev/null 2>&1; then
    drop="env HOME=$(getent passwd {user} | cut -d: -f6) setpriv --reuid={user} --regid={user} --init-groups --"
else
    {log} "no way to drop to the {user} user (gosu, su-exec or setpriv)"
    exit 1
fi
"""
