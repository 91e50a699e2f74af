//! The control-socket protocol between `mcpctl` and `mcpd`: messages, framing and version.
