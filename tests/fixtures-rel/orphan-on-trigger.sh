#!/bin/sh
# Serves MCP through a child mcp-echo until $TRIGGER exists, then exits 1 and leaves the echo
# running (an orphan in this process group, still holding the port). The echo's pid goes to
# $PIDFILE.
"$ECHO" &
echo "$!" > "$PIDFILE.tmp" && mv "$PIDFILE.tmp" "$PIDFILE"
while [ ! -e "$TRIGGER" ]; do sleep 0.05; done
rm -f "$TRIGGER"
exit 1
