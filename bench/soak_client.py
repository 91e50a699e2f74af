#!/usr/bin/env python3
"""Soak traffic for bench/soak.sh: continuous MCP tools/call through the mcpd gateway.

Each worker thread holds one MCP session (initialize, notifications/initialized) on one
server and calls the `echo` tool in a loop over raw JSON-RPC POSTs (standard library only).
A failed call is counted against its server and the worker opens a new session; it never
stops early. Runs for --duration seconds, then prints one JSON object:
{"servers": {name: {"ok": n, "failed": n, "first_errors": [...]}}, "seconds": s}.
Only loopback addresses are used.
"""

import argparse
import http.client
import json
import threading
import time


def rpc(conn, path, body, session):
    headers = {
        "Host": "127.0.0.1",
        "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream",
    }
    if session:
        headers["Mcp-Session-Id"] = session
    conn.request("POST", path, body=json.dumps(body), headers=headers)
    response = conn.getresponse()
    data = response.read()
    if response.status >= 300:
        raise RuntimeError(f"HTTP {response.status}: {data[:200]!r}")
    return response.getheader("Mcp-Session-Id") or session, data


def worker(port, name, deadline, stats, lock):
    path = f"/api/v1/mcp/{name}/mcp"
    conn = None
    session = None
    call_id = 0
    while time.monotonic() < deadline:
        try:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                session, _ = rpc(conn, path, {
                    "jsonrpc": "2.0", "id": 0, "method": "initialize",
                    "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                               "clientInfo": {"name": "soak", "version": "1"}}}, None)
                rpc(conn, path, {"jsonrpc": "2.0", "method": "notifications/initialized"}, session)
            call_id += 1
            text = f"soak {call_id}"
            _, data = rpc(conn, path, {
                "jsonrpc": "2.0", "id": call_id, "method": "tools/call",
                "params": {"name": "echo", "arguments": {"text": text}}}, session)
            if text.encode() not in data:
                raise RuntimeError(f"unexpected answer: {data[:200]!r}")
            with lock:
                stats[name]["ok"] += 1
        except Exception as error:  # noqa: BLE001 - every failure counts, whatever its kind
            with lock:
                entry = stats[name]
                entry["failed"] += 1
                if len(entry["first_errors"]) < 5:
                    entry["first_errors"].append(f"{time.strftime('%H:%M:%S')} {error}")
            if conn is not None:
                conn.close()
            conn = None
            session = None
            time.sleep(0.1)
    if conn is not None:
        conn.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True, help="gateway port on 127.0.0.1")
    parser.add_argument("--servers", required=True, help="comma-separated server names")
    parser.add_argument("--connections", type=int, default=2, help="sessions per server")
    parser.add_argument("--duration", type=float, required=True, help="seconds")
    args = parser.parse_args()

    names = [name for name in args.servers.split(",") if name]
    stats = {name: {"ok": 0, "failed": 0, "first_errors": []} for name in names}
    lock = threading.Lock()
    started = time.monotonic()
    deadline = started + args.duration
    threads = [
        threading.Thread(target=worker, args=(args.port, name, deadline, stats, lock), daemon=True)
        for name in names
        for _ in range(args.connections)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(args.duration + 30)
    print(json.dumps({"servers": stats, "seconds": round(time.monotonic() - started, 1)}))


if __name__ == "__main__":
    main()
