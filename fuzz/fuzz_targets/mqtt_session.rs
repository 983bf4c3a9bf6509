//! Fuzzes the device endpoint's MQTT session (`tds_ingest::session::run`) with arbitrary bytes
//! as packets, over an in-memory stream, against a real store: a migrated SQLite database in a
//! temporary directory with a tenant, the gateway `aa:bb:cc:00:00:01` and its meter `D01`, so
//! that a well-formed CONNECT gets through and its PUBLISHes reach the pipeline and the writer.
//!
//! Input: byte 0 picks the credentials (even: a verified certificate of that gateway; odd: the
//! plain listener's password `fuzz`), the rest is what the gateway sends before closing its side.
//! One runtime and store per process. Invariant: the session ends by itself soon after the peer
//! has closed (no panic, no hang); what the server sends back is well-formed MQTT.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tds_domain::limits::ScaleFactor;
use tds_domain::{
    Description, DeviceCode, DeviceMode, DeviceStatus, DeviceType, GatewayCode, Mac, MeasurementKind, Medium,
    ModbusRegister, Name, SlaveId, Unit,
};
use tds_ingest::IngestConfig;
use tds_ingest::config::DevPassword;
use tds_ingest::endpoint::Shared;
use tds_ingest::session::{self, Credentials};
use tds_pki::tls::{DeviceIdentity, RevocationSet};
use tds_store::devices::DeviceFields;
use tds_store::gateways::GatewayFields;
use tds_store::tenants::NewTenant;
use tds_store::{DbOptions, Store};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MAC: &str = "aa:bb:cc:00:00:01";

struct World {
    runtime: tokio::runtime::Runtime,
    shared: Arc<Shared>,
    _dir: tempfile::TempDir,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("fuzz.db").display());
        let shared = runtime.block_on(async {
            let store = Store::open(&url, &DbOptions::default()).await.unwrap();
            let tenant = store
                .tenants()
                .staff_create(&NewTenant::named(Name::parse("name", "Fuzz").unwrap()))
                .await
                .unwrap();
            let fields =
                GatewayFields::new(GatewayCode::parse("GW1").unwrap(), Name::parse("name", "G").unwrap());
            let gateway =
                store.gateways().create(tenant.id, Mac::parse(MAC).unwrap(), &fields, None).await.unwrap();
            let meter = DeviceFields {
                code: DeviceCode::parse("D01").unwrap(),
                mac: None,
                name: Name::parse("name", "M").unwrap(),
                description: Description::default(),
                device_type: DeviceType::Meter,
                medium: Medium::Energy,
                kind: MeasurementKind::Counter,
                unit: Unit::parse("kWh").unwrap(),
                scale_factor: ScaleFactor::default(),
                rollover_value: None,
                slave_id: Some(SlaveId::new(1).unwrap()),
                register: Some(ModbusRegister::new(1).unwrap()),
                mode: DeviceMode::Auto,
                status: DeviceStatus::Active,
                alarm_daily: None,
                alarm_monthly: None,
            };
            store.devices().create(tenant.id, gateway.id, &meter, None).await.unwrap();
            let mut config = IngestConfig::new("127.0.0.1:0".parse().unwrap());
            config.connect_timeout = Duration::from_millis(200);
            config.max_packet_bytes = 64 * 1024;
            config.max_message_bytes = 16 * 1024;
            config.commit_max_delay = Duration::from_millis(1);
            Arc::new(Shared::new(config, store, RevocationSet::new(Vec::new())))
        });
        World { runtime, shared, _dir: dir }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&how, packets)) = data.split_first() else { return };
    let world = world();
    let credentials = if how & 1 == 0 {
        Credentials::Certificate(DeviceIdentity { mac: Mac::parse(MAC).unwrap(), serial_hex: "0f".into() })
    } else {
        Credentials::Password(DevPassword::new("fuzz"))
    };
    let verbose = std::env::var_os("TDS_FUZZ_VERBOSE").is_some();
    world.runtime.block_on(async {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let session = session::run(server, credentials, world.shared.clone(), None);
        let gateway = async {
            // Written while reading, so that neither side's buffer fills; then closed.
            let mut replies = Vec::new();
            let (mut rd, mut wr) = tokio::io::split(&mut client);
            let write = async {
                for chunk in packets.chunks(4096) {
                    if wr.write_all(chunk).await.is_err() {
                        break;
                    }
                }
                let _ = wr.shutdown().await;
            };
            let read = rd.read_to_end(&mut replies);
            let (_, read) = tokio::join!(write, read);
            (replies, read.is_ok())
        };
        let ended =
            tokio::time::timeout(Duration::from_secs(10), async { tokio::join!(session, gateway) }).await;
        let Ok(((), (replies, _))) = ended else {
            panic!("the session did not end within 10 s of the gateway closing its side");
        };
        let mut buf = bytes::BytesMut::from(&replies[..]);
        while !buf.is_empty() {
            match rumqttc::mqttbytes::v4::Packet::read(&mut buf, usize::MAX) {
                Ok(packet) if verbose => eprintln!("server sent {packet:?}"),
                Ok(_) => {}
                Err(e) => panic!("the session sent malformed MQTT ({e:?}): {replies:02x?}"),
            }
        }
    });
});
