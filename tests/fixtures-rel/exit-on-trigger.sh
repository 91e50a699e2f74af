#!/bin/sh
# Serves MCP through a child mcp-echo until $TRIGGER exists, then stops it and exits $CODE,
# or, with $SIGNAL set, kills itself with that signal (e.g. SEGV: dies as a crash would).
. "$(dirname "$0")/../fixtures/lib/trigger.sh"
serve_until_trigger "$ECHO" "$TRIGGER"
if [ -n "$SIGNAL" ]; then
    kill -"$SIGNAL" $$
fi
exit "${CODE:-3}"
