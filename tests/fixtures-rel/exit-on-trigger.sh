#!/bin/sh
# Serves MCP through a child mcp-echo until $TRIGGER exists, then stops it and exits $CODE,
# or, with $SIGNAL set, kills itself with that signal (e.g. SEGV: dies as a crash would).
"$ECHO" &
echo_pid=$!
while [ ! -e "$TRIGGER" ]; do sleep 0.05; done
rm -f "$TRIGGER"
kill "$echo_pid"
wait "$echo_pid"
if [ -n "$SIGNAL" ]; then
    kill -"$SIGNAL" $$
fi
exit "${CODE:-3}"
