//! The control socket: accepts `mcpctl` connections and hands each request to its handler.
