#!/bin/sh
# Serves MCP through a child mcp-echo until $TRIGGER exists, then stops it: the port closes
# but this process stays alive, as a server that closed its listening socket would.
. "$(dirname "$0")/../fixtures/lib/trigger.sh"
serve_until_trigger "$ECHO" "$TRIGGER"
exec sleep 300
