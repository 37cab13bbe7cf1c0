"""The RabbitMQ benchmark's clients, run inside a service host: `python -m benchmarks.amqp_client '<json>'`.

Modes: `probe` (every node's AMQP port accepts a connection), `declare` (a fresh quorum queue), `delete`,
`publish` (persistent messages with publisher confirms, a fixed window in flight, for warm-up + duration
seconds; the confirm latency of every message sent in the measured window) and `consume` (acks every
message, the prefetch given, counts the messages acked in the measured window). Results go to a JSON file.
"""

from __future__ import annotations

import contextlib
import json
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def probe(targets: list[str]) -> int:
    for target in targets:
        host, port = target.rsplit(":", 1)
        try:
            with socket.create_connection((host, int(port)), timeout=1):
                pass
        except OSError:
            return 1
    return 0


def declare(url: str, queue: str) -> int:
    import pika

    conn = pika.BlockingConnection(pika.URLParameters(url))
    channel = conn.channel()
    channel.queue_delete(queue)
    channel.queue_declare(queue, durable=True, arguments={"x-queue-type": "quorum"})
    conn.close()
    return 0


def delete(url: str, queue: str) -> int:
    import pika

    conn = pika.BlockingConnection(pika.URLParameters(url))
    conn.channel().queue_delete(queue)
    conn.close()
    return 0


def publish(url: str, queue: str, start_at: float, warmup_s: float, duration_s: float, window: int,
            size: int, out: str) -> int:
    """Closed loop: `window` unconfirmed messages in flight; every confirm sends as many new ones. Times are
    wall-clock (time.time) so that all the clients of a run share one measured window."""
    import pika
    from pika.spec import Basic

    body = b"x" * size
    props = pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent, content_type="application/octet-stream")
    measure_from, measure_to = start_at + warmup_s, start_at + warmup_s + duration_s
    sent_at: dict[int, float] = {}
    state: dict[str, Any] = {"tag": 0, "confirmed": 0, "nacked": 0, "error": "", "blocked": 0, "blocked_s": 0.0}
    blocked_at: list[float] = []
    latencies: list[float] = []
    channel: Any = None

    def fill() -> None:
        while len(sent_at) < window and time.time() < measure_to:
            channel.basic_publish("", queue, body, props)
            state["tag"] += 1
            sent_at[state["tag"]] = time.time()
        if time.time() >= measure_to and not sent_at:
            conn.close()

    def on_confirm(frame: Any) -> None:
        method = frame.method
        now = time.time()
        tags = [t for t in sent_at if t <= method.delivery_tag] if method.multiple else [method.delivery_tag]
        for tag in tags:
            sent = sent_at.pop(tag)
            if isinstance(method, Basic.Nack):
                state["nacked"] += 1
            elif measure_from <= sent and now <= measure_to:
                state["confirmed"] += 1
                latencies.append((now - sent) * 1000)
        fill()

    def on_blocked(_conn: Any, _frame: Any) -> None:
        # connection.blocked: a node raised a memory or disk alarm, and every publisher waits until it clears.
        state["blocked"] += 1
        blocked_at.append(time.time())

    def on_unblocked(_conn: Any, _frame: Any) -> None:
        if blocked_at:
            state["blocked_s"] += time.time() - blocked_at.pop()

    def on_channel(ch: Any) -> None:
        nonlocal channel
        channel = ch
        delay = max(0.0, start_at - time.time())
        ch.confirm_delivery(ack_nack_callback=on_confirm,
                            callback=lambda _frame: conn.ioloop.call_later(delay, fill))

    def on_closed(_conn: Any, reason: Exception) -> None:
        if time.time() < measure_to:
            state["error"] = f"connection closed early: {reason!r}"
        conn.ioloop.stop()

    def on_failed(_conn: Any, reason: Exception) -> None:
        state["error"] = f"connection failed: {reason!r}"
        conn.ioloop.stop()

    conn = pika.SelectConnection(pika.URLParameters(url), on_open_callback=lambda c: c.channel(
        on_open_callback=on_channel), on_open_error_callback=on_failed, on_close_callback=on_closed)
    conn.add_on_connection_blocked_callback(on_blocked)
    conn.add_on_connection_unblocked_callback(on_unblocked)
    # Bounded: the run's end plus a grace period for the last confirms.
    conn.ioloop.call_later(max(1.0, measure_to - time.time() + 30), conn.ioloop.stop)
    conn.ioloop.start()
    if blocked_at:  # still blocked when the run ended
        state["blocked_s"] += time.time() - blocked_at.pop()
    Path(out).write_text(json.dumps({**state, "seconds": duration_s, "latencies_ms": latencies}))
    return 1 if state["error"] else 0


def consume(url: str, queue: str, start_at: float, warmup_s: float, duration_s: float, prefetch: int,
            out: str) -> int:
    import pika

    measure_from, measure_to = start_at + warmup_s, start_at + warmup_s + duration_s
    acked = {"n": 0}
    conn = pika.BlockingConnection(pika.URLParameters(url))
    channel = conn.channel()
    channel.basic_qos(prefetch_count=prefetch)

    def on_message(ch: Any, method: Any, _props: Any, _body: bytes) -> None:
        ch.basic_ack(method.delivery_tag)
        if measure_from <= time.time() <= measure_to:
            acked["n"] += 1

    channel.basic_consume(queue, on_message)
    while time.time() < measure_to:
        conn.process_data_events(time_limit=0.2)
    with contextlib.suppress(Exception):
        conn.close()
    Path(out).write_text(json.dumps({"acked": acked["n"], "seconds": duration_s, "error": ""}))
    return 0


def main(args: dict[str, Any]) -> int:
    mode = args.pop("mode")
    handlers: dict[str, Callable[..., int]] = {"probe": probe, "declare": declare, "delete": delete,
                                                "publish": publish, "consume": consume}
    return handlers[mode](**args)


if __name__ == "__main__":
    sys.exit(main(json.loads(sys.argv[1])))
