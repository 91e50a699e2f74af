#!/bin/sh
# Serves MCP through a child mcp-echo until $TRIGGER exists, then exits 1 and leaves the echo
# running (an orphan in this process group, still holding the port). The echo's pid goes to
# $PIDFILE.
. "$(dirname "$0")/../fixtures/lib/trigger.sh"
"$ECHO" &
echo "$!" > "$PIDFILE.tmp" && mv "$PIDFILE.tmp" "$PIDFILE"
await_trigger "$TRIGGER"
exit 1
