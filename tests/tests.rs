//! End-to-end tests that run the real binaries. One test target; each concern is a module.

mod abuse;
mod abuse_conn;
mod abuse_files;
mod abuse_headers;
mod abuse_stdio;
mod abuse_term;
mod audit_ctl;
mod authz;
mod bench_smoke;
mod connect;
mod control;
mod echo;
mod faults;
mod gateway;
mod harness;
mod legacy;
mod limits;
mod ops;
mod probes;
mod schema;
mod stdio;
mod stdio_faults;
mod stdio_interop;
mod stdio_sessions;
mod supervision;
mod web;
