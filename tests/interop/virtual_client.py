"""Drives a virtual server of the mcpd gateway with the official Python SDK (a 2025-11-25
session, opened with `initialize`), and prints what it saw as one JSON object on stdout.

Usage:
  python3 virtual_client.py tour URL TOKEN OTHER_TOKEN
      lists the tools, calls `echo_echo` and `everything_echo`, runs the everything server's
      long-running tool with a progress callback, cancels a long `echo_progress` call after
      its first notification, then lists the tools as OTHER_TOKEN:
      {"protocol_version", "server_name", "tools", "other_tools", "echo", "everything_echo",
       "progress": [[progress, total]...], "long_result", "cancelled": bool}
  python3 virtual_client.py kill URL TOKEN DIR
      starts the everything server's long-running tool, writes DIR/running at its first
      progress notification, and waits for the call's end (the harness kills the member);
      then calls `echo_echo`: {"error_code", "error_message", "progress_seen", "echo"}
  python3 virtual_client.py restart URL TOKEN DIR
      calls both members, writes DIR/ready, waits for DIR/go (the harness
      restarts mcpd meanwhile), then calls both members again and lists the tools in the
      same session: {"session_before", "session_after": the session ids the requests
      carried before and after, "before", "after", "tools"}

Every wait is bounded; any failure exits non-zero with the error on stderr.
"""

import json
import os
import sys

import anyio
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError

LONG_TOOL = "everything_trigger-long-running-operation"
WAIT = 60


def texts(result) -> list[str]:
    return [item.text for item in result.content if getattr(item, "type", "") == "text"]


async def call_texts(session: ClientSession, tool: str, arguments: dict) -> list[str]:
    with anyio.fail_after(WAIT):
        result = await session.call_tool(tool, arguments)
    if result.is_error:
        raise RuntimeError(f"{tool} answered isError: {texts(result)}")
    return texts(result)


async def tool_names(session: ClientSession) -> list[str]:
    with anyio.fail_after(WAIT):
        listed = await session.list_tools()
    return sorted(tool.name for tool in listed.tools)


async def wait_for_file(path: str) -> None:
    with anyio.fail_after(WAIT * 2):
        while not os.path.exists(path):
            await anyio.sleep(0.02)


def connect(url: str, token: str):
    return create_mcp_http_client(headers={"Authorization": f"Bearer {token}"})


async def tour(url: str, token: str, other_token: str) -> dict:
    out: dict = {}
    async with connect(url, token) as http:
        async with streamable_http_client(url, http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                with anyio.fail_after(WAIT):
                    initialized = await session.initialize()
                out["protocol_version"] = initialized.protocol_version
                out["server_name"] = initialized.server_info.name
                out["tools"] = await tool_names(session)
                out["echo"] = await call_texts(session, "echo_echo", {"text": "through all"})
                out["everything_echo"] = await call_texts(
                    session, "everything_echo", {"message": "through all"}
                )

                progress: list[list[float | None]] = []

                async def on_progress(value: float, total: float | None, _message: str | None) -> None:
                    progress.append([value, total])

                with anyio.fail_after(WAIT):
                    long = await session.call_tool(
                        LONG_TOOL, {"duration": 0.6, "steps": 3}, progress_callback=on_progress
                    )
                out["progress"] = progress
                out["long_result"] = texts(long)

                # Cancel a call once it runs in the member (its first progress notification):
                # the SDK sends `notifications/cancelled` for it.
                running = anyio.Event()

                async def on_first(_value: float, _total: float | None, _message: str | None) -> None:
                    running.set()

                cancelled = False
                async with anyio.create_task_group() as group:

                    async def long_call() -> None:
                        await session.call_tool(
                            "echo_progress", {"steps": 10000, "interval_ms": 50}, progress_callback=on_first
                        )

                    group.start_soon(long_call)
                    with anyio.fail_after(WAIT):
                        await running.wait()
                    group.cancel_scope.cancel()
                    cancelled = True
                out["cancelled"] = cancelled
                # The session still works after the cancellation.
                out["after_cancel"] = await call_texts(session, "echo_echo", {"text": "still here"})
    async with connect(url, other_token) as http:
        async with streamable_http_client(url, http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                with anyio.fail_after(WAIT):
                    await session.initialize()
                out["other_tools"] = await tool_names(session)
    return out


async def kill(url: str, token: str, directory: str) -> dict:
    out: dict = {"error_code": None, "error_message": None, "progress_seen": 0}
    async with connect(url, token) as http:
        async with streamable_http_client(url, http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                with anyio.fail_after(WAIT):
                    await session.initialize()

                async def on_progress(_value: float, _total: float | None, _message: str | None) -> None:
                    out["progress_seen"] += 1
                    if out["progress_seen"] == 1:
                        with open(os.path.join(directory, "running"), "w") as marker:
                            marker.write("1")

                try:
                    with anyio.fail_after(WAIT * 2):
                        result = await session.call_tool(
                            LONG_TOOL, {"duration": 600, "steps": 3000}, progress_callback=on_progress
                        )
                    out["unexpected_result"] = texts(result)
                except MCPError as error:
                    out["error_code"] = error.error.code
                    out["error_message"] = error.error.message
                out["echo"] = await call_texts(session, "echo_echo", {"text": "still answering"})
    return out


async def restart(url: str, token: str, directory: str) -> dict:
    out: dict = {}
    sent: list[str | None] = []

    async def record(request) -> None:
        sent.append(request.headers.get("mcp-session-id"))

    async with connect(url, token) as http:
        http.event_hooks["request"].append(record)
        async with streamable_http_client(url, http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                with anyio.fail_after(WAIT):
                    await session.initialize()
                out["before"] = await call_texts(session, "echo_echo", {"text": "before"})
                out["before"] += await call_texts(session, "everything_echo", {"message": "before"})
                out["session_before"] = sorted({s for s in sent if s})
                sent.clear()
                with open(os.path.join(directory, "ready"), "w") as marker:
                    marker.write("1")
                await wait_for_file(os.path.join(directory, "go"))
                out["after"] = await call_texts(session, "echo_echo", {"text": "after"})
                out["after"] += await call_texts(session, "everything_echo", {"message": "after"})
                out["tools"] = await tool_names(session)
                # Every request after the restart (the GET stream's reconnections included)
                # carried the session id from before: the SDK never opened a new session.
                out["session_after"] = sorted({str(s) for s in sent})
    return out


async def main(argv: list[str]) -> None:
    modes = {"tour": tour, "kill": kill, "restart": restart}
    if len(argv) != 5 or argv[1] not in modes:
        sys.exit(__doc__)
    out = await modes[argv[1]](argv[2], argv[3], argv[4])
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    anyio.run(main, sys.argv)
