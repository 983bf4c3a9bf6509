//! TDS gateway side, shared by the `tds-agent` binary and the server's simulator.
//!
//! The agent's parts: [`config`] (the TOML file), [`modbus`] (reading meters), [`batch`] (the
//! wire format of SPEC §2), [`queue`] (the crash-safe disk queue), [`uplink`] (MQTT over mutual
//! TLS, store and forward), [`cert`] (`cert_update`: validation, CSR, the swap with rollback),
//! [`status`] (what `tds-agent status` shows) and [`agent`] (them together). [`sim`] runs
//! virtual gateways that behave like the DCU concentrators in the field against a TDS device
//! endpoint.
//!
//! Must not: touch a database or the CA. Whoever runs the simulator provisions the gateways and
//! their certificates and hands them in ([`sim::GatewaySpec`]).

pub mod agent;
pub mod batch;
pub mod cert;
pub mod config;
pub mod modbus;
pub mod queue;
pub mod sim;
pub mod status;
pub mod uplink;
