"""Values as the Docker provider reads them back from the engine (pure). The provider diffs a stack's new
inputs against what it read back after the last `up`, so an input written any other way is a change on
every `up`: for `cpus`, which forces a replacement, every container with such a limit is recreated.
Components render these inputs with the functions here, and the resolver refuses what cannot round-trip."""

from __future__ import annotations

from fractions import Fraction


def docker_cpus(millis: int) -> str:
    """A CPU limit as pulumi-docker reads it back (its bridged provider's `nanoInt64ToDecimalString`).

    It prints NanoCPUs with nine decimals; when exactly nine characters of that are zeros it reprints with
    one decimal (rounding half away from zero), otherwise it trims trailing zeros: 1000 -> "1.0",
    500 -> "0.5", 250 -> "0.25", 1500 -> "1.5", 10000 -> "10." (ten zeros: trimmed to the point).
    """
    if millis < 0:
        raise ValueError(f"a CPU limit cannot be negative: {millis}")
    if millis == 0:
        return "0"
    whole, frac = divmod(millis, 1000)
    nine = f"{whole}.{frac:03d}000000"
    if nine.count("0") == 9:
        tenths = (millis + 50) // 100
        return f"{tenths // 10}.{tenths % 10}"
    return nine.rstrip("0")


def docker_cpus_round_trip(millis: int) -> bool:
    """Whether the limit read back is the limit sent (false for 10-90 and for 10.001-10.090 and the like,
    which come back rounded to one decimal: 0.01 CPUs would come back as 0, which Docker reads as no limit)."""
    text = docker_cpus(millis).rstrip(".")
    return Fraction(text) * 1000 == millis


def nearest_round_trip_cpus(millis: int) -> list[int]:
    """The closest limits below (where there is one) and above `millis` that round-trip, for a message."""
    low = next((m for m in range(millis - 1, 0, -1) if docker_cpus_round_trip(m)), None)
    high = next(m for m in range(millis + 1, millis + 1001) if docker_cpus_round_trip(m))
    return [m for m in (low, high) if m is not None]


def go_duration(seconds: int) -> str:
    """Whole seconds as Go's time.Duration prints them, as the provider reads a health check back
    ("60s" comes back as "1m0s")."""
    if seconds < 0:
        raise ValueError(f"a duration cannot be negative: {seconds}")
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def swarm_duration(seconds: int) -> str:
    """Whole seconds as the provider reads a service's durations back (its `shortDur`: Go's Duration.String
    with a trailing "0s" after minutes dropped, and "0m" after hours): 90 -> "1m30s", 60 -> "1m", 3600 -> "1h"."""
    text = go_duration(seconds)
    if text.endswith("m0s"):
        text = text[:-2]
    if text.endswith("h0m"):
        text = text[:-2]
    return text
