"""What the monitoring scenarios produce, run inside a client host of the test network (`python -m` this module
with one JSON argument): HTTP load through Nginx, Redis misses, RabbitMQ messages, and reads of Prometheus' API.
Prints one JSON document."""

from __future__ import annotations

import http.client
import json
import sys
import threading
import time
import urllib.request
from typing import Any


def get(args: dict[str, Any]) -> dict[str, Any]:
    with urllib.request.urlopen(args["url"], timeout=args.get("timeout", 5)) as answer:
        return {"status": answer.status, "body": answer.read().decode()}


def http_load(args: dict[str, Any]) -> dict[str, Any]:
    """`concurrency` keep-alive connections sending GET `path` until `seconds` pass: the statuses seen."""
    deadline = time.monotonic() + args["seconds"]
    statuses: dict[str, int] = {}
    lock = threading.Lock()

    def worker() -> None:
        conn = http.client.HTTPConnection(args["host"], args["port"], timeout=10)
        while time.monotonic() < deadline:
            try:
                conn.request("GET", args["path"])
                answer = conn.getresponse()
                answer.read()
                key = str(answer.status)
            except (OSError, http.client.HTTPException) as e:
                key = type(e).__name__
                conn.close()
                conn = http.client.HTTPConnection(args["host"], args["port"], timeout=10)
            with lock:
                statuses[key] = statuses.get(key, 0) + 1
        conn.close()

    threads = [threading.Thread(target=worker) for _ in range(args["concurrency"])]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"statuses": statuses}


def misses(args: dict[str, Any]) -> dict[str, Any]:
    """GETs of keys that do not exist, `rate` a second for `seconds`, as the applications' Redis user."""
    import redis

    client = redis.Redis.from_url(args["url"], socket_timeout=5)
    deadline = time.monotonic() + args["seconds"]
    sent = found = 0
    while time.monotonic() < deadline:
        started = time.monotonic()
        found += client.get(f"banyan-monitoring-miss-{sent}") is not None
        sent += 1
        time.sleep(max(0.0, 1 / args["rate"] - (time.monotonic() - started)))
    return {"sent": sent, "found": found}


def publish(args: dict[str, Any]) -> dict[str, Any]:
    """`count` persistent messages to a new durable queue no one consumes, with publisher confirms."""
    import pika

    conn = pika.BlockingConnection(pika.URLParameters(args["url"]))
    channel = conn.channel()
    channel.confirm_delivery()
    channel.queue_declare(args["queue"], durable=True)
    for i in range(args["count"]):
        channel.basic_publish("", args["queue"], f"message {i}".encode(),
                              pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent), mandatory=True)
    declared = channel.queue_declare(args["queue"], passive=True)
    conn.close()
    return {"ready": declared.method.message_count}


def main() -> None:
    args = json.loads(sys.argv[1])
    mode = args.pop("mode")
    result = {"get": get, "http_load": http_load, "misses": misses, "publish": publish}[mode](args)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
