"""Connects the official Python SDK with a client entry that `mcpctl connect` printed.

Usage: python3 connect_client.py ENTRY_JSON

ENTRY_JSON is one server's entry of a Claude Code `.mcp.json` or a VS Code `.vscode/mcp.json`
(`{"type": "http", "url": ..., "headers": {...}}`): exactly the URL and headers that client
would send. Initializes, lists the tools, calls `echo`, and prints one JSON object:
{"server_name", "tools", "echo"}. Any failure exits non-zero with the error on stderr.
"""

import json
import sys

import anyio
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client


async def main(entry_json: str) -> None:
    entry = json.loads(entry_json)
    if entry.get("type") != "http":
        sys.exit(f"not a streamable HTTP entry: {entry}")
    async with create_mcp_http_client(headers=entry.get("headers")) as http:
        async with streamable_http_client(entry["url"], http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                initialized = await session.initialize()
                tools = await session.list_tools()
                echoed = await session.call_tool("echo", {"text": "through mcpd"})
                texts = [item.text for item in echoed.content if getattr(item, "type", "") == "text"]
                print(
                    json.dumps(
                        {
                            "server_name": initialized.server_info.name,
                            "tools": sorted(tool.name for tool in tools.tools),
                            "echo": texts,
                        }
                    ),
                    flush=True,
                )


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: connect_client.py ENTRY_JSON")
    anyio.run(main, sys.argv[1])
