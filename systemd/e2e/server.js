// A minimal stateless MCP server (2026-07-28 generation) on 127.0.0.1:$MCP_PORT, Node's
// standard library only: shows that a Node (V8, JIT) server runs under the unit's hardening.
const http = require("http");
http
  .createServer((req, res) => {
    let data = "";
    req.on("data", (chunk) => (data += chunk));
    req.on("end", () => {
      const body = data ? JSON.parse(data) : {};
      let result = {};
      if (body.method === "server/discover") {
        result = { supportedVersions: ["2026-07-28"], serverInfo: { name: "js" } };
      } else if (body.method === "tools/list") {
        result = { tools: [{ name: "js_hello", inputSchema: { type: "object" } }] };
      }
      const reply = JSON.stringify({ jsonrpc: "2.0", id: body.id, result });
      res.writeHead(200, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(reply) });
      res.end(reply);
    });
  })
  .listen(Number(process.env.MCP_PORT), "127.0.0.1");
