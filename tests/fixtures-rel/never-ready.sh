#!/bin/sh
# Starts and never listens: every start runs past start_timeout.
exec sleep 300
