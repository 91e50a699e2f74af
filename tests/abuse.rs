//! Gateway abuse, end to end against the real `mcpd`.
