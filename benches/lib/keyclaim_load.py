#!/usr/bin/env python3
"""A fixed number of KeyClaim requests over keep-alive connections, for instruction counts.

    keyclaim_load.py PORT KEY CREATES VALIDATES [CONNECTIONS]

Sends CREATES creates (`{"key": KEY, "ttl": 30}`), then VALIDATES validations of the
first of them (response = hex HMAC-SHA256(key = KEY, message = challenge), SPEC.md §4),
spread over CONNECTIONS connections (default 8) opened before the first request. Every
answer must be 200 (and `"valid":true` for a validation), else it exits 1 naming the
answer. The counts are exact, so a server's instruction total divided by them is a
per-request figure; the connections take turns, so a server sees several ready at once
as it does under wrk. Stays on 127.0.0.1; every read has a 120 s deadline.
"""

import asyncio
import hashlib
import hmac
import json
import sys

DEADLINE_S = 120


async def exchange(reader, writer, path, body):
    payload = json.dumps(body, separators=(",", ":")).encode()
    writer.write(
        b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (path.encode(), len(payload), payload)
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), DEADLINE_S)
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    answer = await asyncio.wait_for(reader.readexactly(length), DEADLINE_S)
    if status != 200:
        raise SystemExit(f"{path} answered {status}: {answer[:200]!r}")
    return json.loads(answer)


async def worker(port, jobs, results):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while jobs:
            index, path, body = jobs.pop()
            results[index] = await exchange(reader, writer, path, body)
    finally:
        writer.close()


async def phase(port, connections, requests):
    """Runs (path, body) requests over `connections`; their answers, in order."""
    jobs = [(i, path, body) for i, (path, body) in enumerate(requests)][::-1]
    results = [None] * len(requests)
    await asyncio.gather(*(worker(port, jobs, results) for _ in range(connections)))
    return results


async def main():
    port, key = int(sys.argv[1]), sys.argv[2]
    creates, validates = int(sys.argv[3]), int(sys.argv[4])
    connections = int(sys.argv[5]) if len(sys.argv) > 5 else 8
    if validates > creates:
        raise SystemExit("VALIDATES must not exceed CREATES: each validates its own challenge")
    made = await phase(
        port,
        connections,
        [("/api/challenge/create", {"key": key, "ttl": 30})] * creates,
    )
    checks = []
    for answer in made[:validates]:
        challenge = answer["challenge"]
        response = hmac.new(key.encode(), challenge.encode(), hashlib.sha256).hexdigest()
        checks.append(
            ("/api/challenge/validate", {"key": key, "challenge": challenge, "response": response})
        )
    verdicts = await phase(port, connections, checks)
    for verdict in verdicts:
        if verdict.get("valid") is not True:
            raise SystemExit(f"a correct validation was refused: {verdict}")


asyncio.run(main())
