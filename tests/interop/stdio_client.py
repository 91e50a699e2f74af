"""Drives a stdio MCP server bridged by mcpd's gateway with the official Python SDK.

Usage: python3 stdio_client.py URL PLAN

PLAN is a JSON object: {"call": [TOOL, ARGS], "progress": [TOOL, ARGS] (optional),
"cancel": [TOOL, ARGS] (optional)}. The client initializes, lists the tools, calls `call`;
with `progress` it calls that tool with a progress callback and counts the notifications;
with `cancel` it starts that tool, waits for its first progress notification, cancels it
(the SDK sends notifications/cancelled), then calls `call` again to show the server still
serves. Prints one JSON object on stdout:
{"server_name", "protocol_version", "tools", "texts", "progress", "cancelled", "after_cancel"}.
Any failure exits non-zero with the error on stderr.
"""

import json
import sys

import anyio
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client


def texts(result):
    return [item.text for item in result.content if getattr(item, "type", "") == "text"]


async def main(url: str, plan: dict) -> None:
    out = {}
    async with create_mcp_http_client() as http:
        async with streamable_http_client(url, http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                initialized = await session.initialize()
                out["server_name"] = initialized.server_info.name
                out["protocol_version"] = initialized.protocol_version
                tools = await session.list_tools()
                out["tools"] = sorted(tool.name for tool in tools.tools)
                tool, args = plan["call"]
                result = await session.call_tool(tool, args)
                out["texts"] = texts(result)
                out["is_error"] = bool(result.is_error)

                if "progress" in plan:
                    seen = []

                    async def on_progress(progress, total, message):
                        seen.append(progress)

                    tool, args = plan["progress"]
                    with anyio.fail_after(60):
                        await session.call_tool(tool, args, progress_callback=on_progress)
                    out["progress"] = seen

                if "cancel" in plan:
                    first = anyio.Event()

                    async def on_first(progress, total, message):
                        first.set()

                    tool, args = plan["cancel"]
                    async with anyio.create_task_group() as group:

                        async def long_call():
                            await session.call_tool(tool, args, progress_callback=on_first)

                        group.start_soon(long_call)
                        with anyio.fail_after(30):
                            await first.wait()
                        group.cancel_scope.cancel()
                    out["cancelled"] = True
                    tool, args = plan["call"]
                    with anyio.fail_after(30):
                        again = await session.call_tool(tool, args)
                    out["after_cancel"] = texts(again)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: stdio_client.py URL PLAN")
    anyio.run(main, sys.argv[1], json.loads(sys.argv[2]))
