//! Tests of the mock server: its protocol semantics, clock, paging, faults, batch and gates.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

mod batch;
mod decorator;
mod faults;
mod feed;
mod gates;
mod queries;
mod semantics;
