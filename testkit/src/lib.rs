//! Test support shared by mcpd's unit tests and the end-to-end tests of `mcpd-tests`.
//!
//! - [`ports`]: the one allocator of loopback test ports ([`port_block`], [`free_port`]),
//!   outside the kernel's ephemeral range and distinct across tests, test processes and
//!   checkouts; [`hold_port`] and [`require_free`] for a test that needs one given port.

pub mod ports;

pub use ports::{
    PortBlock, SLOT, bindable, ephemeral_range, free_port, hold_port, port_block, require_free,
};
