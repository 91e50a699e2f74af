#!/bin/sh
# Serves MCP through a child mcp-echo until $TRIGGER exists, then stops it: the port closes
# but this process stays alive, as a server that closed its listening socket would.
"$ECHO" &
echo_pid=$!
while [ ! -e "$TRIGGER" ]; do sleep 0.05; done
rm -f "$TRIGGER"
kill "$echo_pid"
wait "$echo_pid"
exec sleep 300
