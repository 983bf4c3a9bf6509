//! TDS device endpoint (SPEC §2): gateways connect over MQTT 3.1.1 with mutual TLS, publish
//! telemetry batches, and every reading is stored exactly once before the gateway is told so.
//!
//! - [`endpoint`]: the TLS accept loop, the live revocation set, the registry of sessions;
//! - [`tls_stream`]: the TLS connection over rustls's unbuffered API, holding no buffer idle;
//! - [`session`]: one gateway's MQTT conversation (CONNECT checks, topic ACL, PUBACK order);
//! - [`pipeline`]: a gateway's message turned into readings and dead letters (or a status);
//! - [`writer`]: group commit of many sessions' messages in one transaction, then their acks;
//! - [`directory`]: gateways and devices by MAC and code, cached and refreshed on a miss;
//! - [`limits`]: token buckets and once-per-interval logs for the bounds of SPEC §2 Limits;
//! - [`status`]: online/offline writes coalesced per gateway;
//! - [`connlog`]: the connections' history and states written in batches by one task;
//! - [`broker`]: scale-out mode, consuming from an external broker's shared subscription
//!   through the same pipeline and writer, acknowledging after the commit.
//!
//! Must not: serve HTTP, know about pages, or act as a general broker (it only accepts what the
//! device protocol allows and never forwards messages between clients).

pub mod broker;
pub mod broker_outbox;
pub mod config;
pub mod connlog;
pub mod csr;
pub mod directory;
pub mod endpoint;
pub mod error;
pub mod limits;
pub mod metrics;
pub mod outbox;
pub mod pipeline;
pub mod registry;
pub mod reported;
pub mod seen;
pub mod session;
pub mod status;
pub mod tls_stream;
pub mod writer;

pub use broker::{BrokerConsumer, BrokerOptions};
pub use config::{DevPassword, IngestConfig, PlainListener};
pub use endpoint::Endpoint;
pub use error::IngestError;
