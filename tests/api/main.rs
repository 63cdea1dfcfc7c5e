//! Black-box tests of the HTTP API: the real application in-process on
//! 127.0.0.1:0 with a fresh data directory per test.
#![allow(clippy::unwrap_used)]

mod admin;
mod auth;
mod errors;
mod helpers;
mod limits;
mod orders;
mod probes;
mod products;
mod users;
mod webhook;
