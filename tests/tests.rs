//! End-to-end tests that run the real binaries. One test target; each concern is a module.

mod abuse;
mod echo;
mod faults;
mod harness;
mod legacy;
