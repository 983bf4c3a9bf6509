//! TDS gateway side. For now this is the simulator's half: [`sim`] runs virtual gateways that
//! behave like the DCU concentrators in the field (meters that grow, gauges that wander, resets,
//! gaps with late backlog batches, the odd bad message) against a TDS device endpoint over real
//! MQTT with mutual TLS, and measures what they see (acknowledgements and their latency).
//!
//! Must not: touch a database or the CA. Whoever runs the simulator provisions the gateways and
//! their certificates and hands them in ([`sim::GatewaySpec`]).

pub mod sim;
