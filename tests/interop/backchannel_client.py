"""Answers a server's requests (sampling, elicitation) through mcpd with the official Python
SDK: several clients at once, each with its own callbacks, so a request that reaches the
wrong client shows in the answers.

Usage: python3 backchannel_client.py URL PLAN

PLAN is a JSON object of scenarios, each optional:
- "sampling": [TOOL, ARGS]: clients A then B call it; each answers sampling with its own text.
- "elicitation": [TOOL, ARGS]: clients A then B call it; each accepts with its own name.
- "concurrent": [TOOL, ARGS]: A and B call it at once, and neither answers before both were
  asked (for servers where the two calls can be told apart).
- "ambiguous": [TOOL, ARGS]: A calls it and holds its answer until B's call of it returned.
- "no_capability": [TOOL, ARGS]: a client without a sampling callback calls it.
- "disconnect": [TOOL, ARGS]: a client calls it and goes away once asked; then client E
  calls it and answers.
Prints one JSON object with one entry per scenario. Any failure exits non-zero.
"""

import json
import sys
import time

import anyio
from mcp import types
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp.shared._httpx_utils import create_mcp_http_client

LIMIT = 60


def texts(result):
    return [item.text for item in result.content if getattr(item, "type", "") == "text"]


def outcome(result):
    return {"texts": texts(result), "is_error": bool(result.is_error)}


class Client:
    """One client session with its own callbacks; `asked` counts the server's requests."""

    def __init__(self, url, name, callbacks=True, hold=None):
        self.url = url
        self.name = name
        self.callbacks = callbacks
        self.hold = hold  # an anyio.Event the callbacks wait for before answering
        self.asked = anyio.Event()
        self.questions = []

    async def on_sampling(self, context, params):
        self.questions.append("sampling")
        self.asked.set()
        if self.hold is not None:
            with anyio.fail_after(LIMIT):
                await self.hold.wait()
        return types.CreateMessageResult(
            role="assistant",
            content=types.TextContent(type="text", text=f"sampled by {self.name}"),
            model=f"model-of-{self.name}",
        )

    async def on_elicitation(self, context, params):
        self.questions.append("elicitation")
        self.asked.set()
        return types.ElicitResult(action="accept", content={"name": f"name-of-{self.name}"})

    async def call(self, tool, args):
        async with create_mcp_http_client() as http:
            async with streamable_http_client(self.url, http_client=http) as (read, write):
                kwargs = {}
                if self.callbacks:
                    kwargs = {
                        "sampling_callback": self.on_sampling,
                        "elicitation_callback": self.on_elicitation,
                    }
                async with ClientSession(read, write, **kwargs) as session:
                    await session.initialize()
                    try:
                        with anyio.fail_after(LIMIT):
                            result = await session.call_tool(tool, args)
                    except MCPError as error:
                        # The tool failed with a JSON-RPC error rather than an error result.
                        return {"texts": [str(error)], "is_error": True}
                    return outcome(result)


async def one_then_other(url, tool, args):
    out = {}
    for name in ("A", "B"):
        client = Client(url, name)
        out[name] = await client.call(tool, args)
        out[name]["questions"] = client.questions
    return out


async def concurrent(url, tool, args):
    both = anyio.Event()
    a = Client(url, "A", hold=both)
    b = Client(url, "B", hold=both)
    out = {}

    async def run(client):
        out[client.name] = await client.call(tool, args)

    async def release():
        with anyio.fail_after(LIMIT):
            await a.asked.wait()
            await b.asked.wait()
        both.set()

    async with anyio.create_task_group() as group:
        group.start_soon(run, a)
        group.start_soon(run, b)
        group.start_soon(release)
    return out


async def ambiguous(url, tool, args):
    b_done = anyio.Event()
    a = Client(url, "A", hold=b_done)
    b = Client(url, "B")
    out = {}

    async def run_a():
        out["A"] = await a.call(tool, args)

    async def run_b():
        with anyio.fail_after(LIMIT):
            await a.asked.wait()
        out["B"] = await b.call(tool, args)
        out["B"]["questions"] = b.questions
        b_done.set()

    async with anyio.create_task_group() as group:
        group.start_soon(run_a)
        group.start_soon(run_b)
    return out


async def disconnect(url, tool, args):
    gone = Client(url, "D", hold=anyio.Event())  # never answers
    out = {}
    async with anyio.create_task_group() as group:

        async def run():
            await gone.call(tool, args)
            out["D"] = "answered"

        async def leave():
            with anyio.fail_after(LIMIT):
                await gone.asked.wait()
            group.cancel_scope.cancel()

        group.start_soon(run)
        group.start_soon(leave)
    out["D_asked"] = gone.questions
    after = Client(url, "E")
    out["E"] = await after.call(tool, args)
    return out


async def no_capability(url, tool, args):
    return await Client(url, "C", callbacks=False).call(tool, args)


SCENARIOS = {
    "sampling": one_then_other,
    "elicitation": one_then_other,
    "concurrent": concurrent,
    "ambiguous": ambiguous,
    "no_capability": no_capability,
    "disconnect": disconnect,
}


async def main(url, plan):
    out = {"seconds": {}}
    for name, scenario in SCENARIOS.items():
        if name in plan:
            started = time.monotonic()
            out[name] = await scenario(url, *plan[name])
            out["seconds"][name] = round(time.monotonic() - started, 2)
    print(json.dumps(out))


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], json.loads(sys.argv[2]))
