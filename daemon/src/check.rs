//! `mcpd check`: validates all configuration offline and reports servers or every error.
