//! mcpctl: the operator CLI.
