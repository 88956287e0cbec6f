#!/usr/bin/env python3
"""Server memory for one large publish to many clients that do not read.

    scripts/stalled_rss.py SERVER_BIN [--clients 2000] [--size 524288]

Starts SERVER_BIN (a fanout-server) on a free port of 127.0.0.1, opens
`--clients` WebSocket connections with a 4 KiB receive buffer, subscribes each
to topic `t` and then never reads again; publishes one binary payload of
`--size` bytes with `POST /api/publish`; samples the server's RSS
(/proc/PID/status) every 20 ms for 3 s while the message is in flight (every
client's copy is stuck behind its full socket), then closes the clients and
samples for 3 s more. Prints RSS before, peak in flight, and after the clients
left, in MiB. Python 3 standard library only (issue 12; docs/benchmarks.md).
"""

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import time


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError("no VmRSS")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def masked_text(payload: bytes) -> bytes:
    """A client text frame (clients must mask; a zero mask is a valid mask)."""
    assert len(payload) < 126
    return bytes([0x81, 0x80 | len(payload), 0, 0, 0, 0]) + payload


def connect(port, i):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    # Spread over 127.0.0.2-255 so that the ephemeral ports never run out.
    s.bind((f"127.0.0.{2 + i % 254}", 0))
    s.connect(("127.0.0.1", port))
    s.sendall(
        b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(4096)
        if not chunk:
            raise RuntimeError("closed during the upgrade")
        buf += chunk
    if not buf.startswith(b"HTTP/1.1 101"):
        raise RuntimeError(buf.split(b"\r\n")[0].decode())
    req = {"jsonrpc": "2.0", "id": 1, "method": "subscribe", "params": {"topic": "t"}}
    s.sendall(masked_text(json.dumps(req, separators=(",", ":")).encode()))
    rest = buf.split(b"\r\n\r\n", 1)[1]
    while b"subscribed" not in rest:
        chunk = s.recv(4096)
        if not chunk:
            raise RuntimeError("closed before the subscribe reply")
        rest += chunk
    return s


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("server_bin")
    ap.add_argument("--clients", type=int, default=2000)
    ap.add_argument("--size", type=int, default=512 * 1024)
    a = ap.parse_args()
    port = free_port()
    srv = subprocess.Popen(
        [a.server_bin, "--listen", f"127.0.0.1:{port}", "--api-key", "k",
         "--max-connections", str(a.clients + 100), "--max-connections-per-ip", "0",
         "--max-body-size", str(a.size + 1024), "--log-level", "warn"],
    )
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        clients = [connect(port, i) for i in range(a.clients)]
        time.sleep(0.5)
        before = rss_mib(srv.pid)
        c = http.client.HTTPConnection("127.0.0.1", port)
        c.request("POST", "/api/publish?topic=t", body=b"\x5a" * a.size,
                  headers={"Authorization": "Bearer k", "Content-Type": "application/octet-stream"})
        r = c.getresponse()
        answer = json.loads(r.read())
        peak = before
        end = time.time() + 3
        while time.time() < end:
            peak = max(peak, rss_mib(srv.pid))
            time.sleep(0.02)
        for s in clients:
            s.close()
        after = before
        end = time.time() + 3
        while time.time() < end:
            after = rss_mib(srv.pid)
            time.sleep(0.02)
        print(f"clients {a.clients}, payload {a.size} bytes, delivered {answer.get('delivered')}")
        print(f"RSS before {before:.1f} MiB, peak in flight {peak:.1f} MiB (+{peak - before:.1f}), "
              f"3 s after the clients left {after:.1f} MiB (+{after - before:.1f})")
    finally:
        srv.terminate()
        srv.wait()


if __name__ == "__main__":
    sys.exit(main())
