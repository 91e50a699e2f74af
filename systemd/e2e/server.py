"""A minimal stateless MCP server (2026-07-28 generation) on 127.0.0.1:$MCP_PORT, standard
library only: shows that a Python server runs under the unit's hardening."""
import json
import os
from http.server import BaseHTTPRequestHandler, HTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        method = body.get("method")
        if method == "server/discover":
            result = {"supportedVersions": ["2026-07-28"], "serverInfo": {"name": "py"}}
        elif method == "tools/list":
            result = {"tools": [{"name": "py_hello", "inputSchema": {"type": "object"}}]}
        else:
            result = {}
        reply = json.dumps({"jsonrpc": "2.0", "id": body.get("id"), "result": result}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):
        pass


HTTPServer(("127.0.0.1", int(os.environ["MCP_PORT"])), Handler).serve_forever()
