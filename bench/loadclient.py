"""A load client process: POST signed events (or a plain body) for a bounded time.

Run several at once (``python -m bench.loadclient ...``) so the client is not the bottleneck of
one GIL; each uses keep-alive connections from a few threads and prints one JSON line with what
it achieved. Only 127.0.0.1 is accepted as a target.
"""

from __future__ import annotations

import argparse
import http.client
import json
import threading
import time
from urllib.parse import urlparse

from .events import delivery


def _worker(args: argparse.Namespace, index: int, object_ids: list[str], counts: list[int]) -> None:
    url = urlparse(args.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    give_up = time.monotonic() + args.seconds
    sent = ok = 0
    while time.monotonic() < give_up and sent < args.max_requests:
        if args.secret:
            body, headers = delivery(
                args.secret, f"wh_{args.tag}_{index}_{sent}", object_ids[sent % len(object_ids)]
            )
        else:
            body, headers = b'{"plain": true}', {"content-type": "application/json"}
        try:
            conn.request("POST", url.path, body=body, headers=headers)
            answer = conn.getresponse()
            answer.read()
            ok += 200 <= answer.status < 300
        except (OSError, http.client.HTTPException):
            conn.close()
            conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
        sent += 1
    conn.close()
    counts[index * 2], counts[index * 2 + 1] = sent, ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--max-requests", type=int, default=20_000, help="per thread")
    parser.add_argument("--secret", default="")
    parser.add_argument("--object-ids", default="", help="file with one response id a line")
    parser.add_argument("--tag", default="0")
    args = parser.parse_args(argv)
    if urlparse(args.url).hostname != "127.0.0.1":
        parser.error("the load client only targets 127.0.0.1")
    object_ids = ["resp_none"]
    if args.object_ids:
        with open(args.object_ids) as f:
            object_ids = [line.strip() for line in f if line.strip()]
    counts = [0] * (2 * args.threads)
    threads = [
        threading.Thread(target=_worker, args=(args, i, object_ids, counts))
        for i in range(args.threads)
    ]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    print(json.dumps({"sent": sum(counts[0::2]), "ok": sum(counts[1::2]), "elapsed_s": elapsed}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
