//! End-to-end tests that run the real binaries. One test target; each concern is a module.

mod abuse;
mod abuse_conn;
mod abuse_files;
mod abuse_headers;
mod abuse_term;
mod authz;
mod bench_smoke;
mod control;
mod echo;
mod faults;
mod gateway;
mod harness;
mod legacy;
mod ops;
mod probes;
mod supervision;
mod virtual_servers;
