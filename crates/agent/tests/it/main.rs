//! Integration tests of the gateway side against real components: a Modbus TCP server and a
//! Modbus RTU server on a pseudo-terminal pair (tokio-modbus's own servers), the disk queue
//! under a real SIGKILL, and the uplink against Debian's Mosquitto over mutual TLS.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(clippy::too_many_lines)]

mod modbus;
mod queue;
mod rtu;
mod support;
mod uplink;
