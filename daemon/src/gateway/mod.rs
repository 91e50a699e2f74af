//! The HTTP gateway: registry, per-server MCP proxy, OAuth/JWT checks and RFC 9728 metadata.
