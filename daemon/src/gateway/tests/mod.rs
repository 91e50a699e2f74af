//! Gateway tests against real sockets: a gateway on 127.0.0.1:0, real upstream servers, real
//! HTTP clients.

mod abuse;
mod allocations;
mod audit_on_park;
mod auth;
mod echo;
mod fuzz;
mod proxy;
mod registry;
mod support;
mod upstream;
mod upstream_hostile;
