//! End-to-end tests that run the real binaries. One test target; each concern is a module.

mod control;
mod bench_smoke;
mod echo;
mod gateway;
mod abuse;
mod echo;
mod faults;
mod harness;
mod legacy;
mod supervision;
mod ops;
