//! End-to-end tests of the device endpoint: the real endpoint on a free port over a test
//! database (SQLite and PostgreSQL), real MQTT clients (rumqttc) over real mutual TLS with
//! certificates from a real CA.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(clippy::too_many_lines, clippy::needless_pass_by_value, clippy::default_trait_access)]

mod limits;
mod protocol;
mod renewal;
mod support;
mod telemetry;
