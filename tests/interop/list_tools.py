"""Lists the tools of one MCP endpoint with the official Python SDK: the README's quick start
points it at the `all` virtual server of `services/`.

Usage: python3 tests/interop/list_tools.py URL [TOKEN]

Prints one JSON object on stdout: {"server_name", "tools": [names, sorted]}. Any failure exits
non-zero with the error on stderr.
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
                with anyio.fail_after(60):
                    initialized = await session.initialize()
                    listed = await session.list_tools()
    names = sorted(tool.name for tool in listed.tools)
    print(json.dumps({"server_name": initialized.server_info.name, "tools": names}), flush=True)


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit("usage: list_tools.py URL [TOKEN]")
    anyio.run(main, sys.argv[1], sys.argv[2] if len(sys.argv) == 3 else None)
