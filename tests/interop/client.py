"""Drives one MCP server through the mcpd gateway with the official Python SDK.

Usage: python3 client.py URL [TOKEN]

Connects over streamable HTTP (with `Authorization: Bearer TOKEN` when given), initializes,
lists the tools, calls `echo`, and prints one JSON object on stdout:
{"protocol_version", "server_name", "tools", "echo"}. Any failure exits non-zero with the
error on stderr.
"""

import json
import sys

import anyio
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client


async def main(url: str, token: str | None) -> None:
    headers = {"Authorization": f"Bearer {token}"} if token else None
    async with create_mcp_http_client(headers=headers) as http:
        async with streamable_http_client(url, http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                initialized = await session.initialize()
                tools = await session.list_tools()
                echoed = await session.call_tool("echo", {"message": "through mcpd"})
                texts = [item.text for item in echoed.content if getattr(item, "type", "") == "text"]
                print(
                    json.dumps(
                        {
                            "protocol_version": initialized.protocol_version,
                            "server_name": initialized.server_info.name,
                            "tools": sorted(tool.name for tool in tools.tools),
                            "echo": texts,
                            "is_error": bool(echoed.is_error),
                        }
                    ),
                    flush=True,
                )


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit("usage: client.py URL [TOKEN]")
    anyio.run(main, sys.argv[1], sys.argv[2] if len(sys.argv) == 3 else None)
