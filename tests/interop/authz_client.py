"""Lists the tools of one MCP server through the mcpd gateway with the official Python SDK,
then tries to call one, and prints what happened as one JSON object on stdout:
{"tools": [names], "called": TOOL, "call_ok": bool, "call_error": str|null}.

Usage: python3 authz_client.py URL TOKEN TOOL [ARGUMENTS_JSON]
"""

import json
import sys

import anyio
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client


async def main(url: str, token: str, tool: str, arguments: dict) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    names = []
    outcome = {"call_ok": False, "call_error": None}
    async with create_mcp_http_client(headers=headers) as http:
        async with streamable_http_client(url, http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                listed = await session.list_tools()
                names = sorted(t.name for t in listed.tools)
                try:
                    with anyio.fail_after(20):
                        result = await session.call_tool(tool, arguments)
                    outcome["call_ok"] = not result.is_error
                    if result.is_error:
                        outcome["call_error"] = "isError"
                except Exception as error:  # the refusal surfaces as an SDK error
                    outcome["call_error"] = f"{type(error).__name__}: {error}"
    print(json.dumps({"tools": names, "called": tool, **outcome}), flush=True)


if __name__ == "__main__":
    if len(sys.argv) not in (4, 5):
        sys.exit("usage: authz_client.py URL TOKEN TOOL [ARGUMENTS_JSON]")
    args = json.loads(sys.argv[4]) if len(sys.argv) == 5 else {}
    anyio.run(main, sys.argv[1], sys.argv[2], sys.argv[3], args)
