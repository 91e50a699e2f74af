//! End-to-end tests that run the real binaries. One test target; each concern is a module.

mod bench_smoke;
mod echo;
mod harness;
mod legacy;
