//! `Bench`: a tenant with a gateway and devices, a CA, and the endpoint listening on
//! 127.0.0.1:0; `Device`: a real rumqttc client with a certificate.

use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, Incoming, MqttOptions, QoS,
    TlsConfiguration, Transport,
};
use std::sync::Arc;
use std::time::Duration;
use tds_domain::{GatewayId, Mac, TenantId};
use tds_ingest::{Endpoint, IngestConfig};
use tds_pki::{CaAlgorithm, CaFiles, CaSubject, DeviceKeyKind, IssuedCertificate};
use tds_store::Store;
use tds_store::certificates::NewCertificate;
use tds_store::rejected::{Rejected, RejectedSummary};
use tds_testkit::{TestDb, fixtures};

pub const MAC: &str = "aa:bb:cc:00:00:01";

pub struct Bench {
    pub store: Store,
    pub port: u16,
    /// The plain (development) listener's port, when [`Bench::start_with`] configured one.
    pub plain_port: Option<u16>,
    pub ca: Arc<CaFiles>,
    pub tenant: TenantId,
    pub gateway: GatewayId,
    _dir: tempfile::TempDir,
    _db: TestDb,
}

impl Bench {
    /// A tenant "T" with gateway [`MAC`] (code GW1) and meters D01 (m³) and D02, and the endpoint.
    pub async fn start(db: TestDb) -> Self {
        Self::start_with(db, |_| {}).await
    }

    /// [`Bench::start`] with the endpoint's configuration changed by `configure` first.
    pub async fn start_with(db: TestDb, configure: impl FnOnce(&mut IngestConfig)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca = Arc::new(
            CaFiles::init(
                dir.path(),
                &CaSubject::default(),
                CaAlgorithm::EcdsaP384,
                None,
                &["localhost".to_owned()],
            )
            .unwrap(),
        );
        let store = db.store.clone();
        let tenant = fixtures::tenant(&store, "T").await;
        let gw = fixtures::gateway(&store, tenant.id, MAC, "GW1").await;
        fixtures::meter(&store, tenant.id, &gw, "D01").await;
        fixtures::meter(&store, tenant.id, &gw, "D02").await;
        let mut config = IngestConfig::new("127.0.0.1:0".parse().unwrap());
        config.revocation_poll = Duration::from_millis(200);
        config.max_message_bytes = 64 * 1024;
        config.csr_ca = Some(ca.clone());
        configure(&mut config);
        let endpoint = Endpoint::bind(config, store.clone(), &ca).await.unwrap();
        let port = endpoint.local_addr().unwrap().port();
        let plain_port = endpoint.plain_addr().map(|a| a.port());
        tokio::spawn(endpoint.run(std::future::pending()));
        Self { store, port, plain_port, ca, tenant: tenant.id, gateway: gw.id, _dir: dir, _db: db }
    }

    /// A certificate for `mac`, recorded as the gateway's when it is registered.
    pub async fn certificate(&self, mac: &str) -> IssuedCertificate {
        let mac = Mac::parse(mac).unwrap();
        let issued = self.ca.ca.issue_device(mac, DeviceKeyKind::EcdsaP256, 30).unwrap();
        if let Ok(g) = self.store.gateways().staff_by_mac(mac).await {
            let record = NewCertificate {
                mac,
                serial: issued.serial_hex.clone(),
                fingerprint_sha256: issued.fingerprint_sha256.clone(),
                pem: issued.cert_pem.clone(),
                key_algorithm: issued.key_algorithm.clone(),
                issued_at: issued.not_before,
                expires_at: issued.not_after,
            };
            self.store.certificates().record_issued(g.tenant_id, g.id, &record, true, None).await.unwrap();
        }
        issued
    }

    pub async fn connect(&self, cert: &IssuedCertificate, client_id: &str) -> Result<Device, String> {
        Device::connect(
            self.port,
            self.ca.ca.cert_pem(),
            &cert.cert_pem,
            cert.key_pem.as_deref().unwrap(),
            client_id,
        )
        .await
    }

    /// Connects as the gateway [`MAC`] with a fresh certificate.
    pub async fn gateway_client(&self) -> Device {
        let cert = self.certificate(MAC).await;
        self.connect(&cert, MAC).await.unwrap()
    }

    pub async fn readings(&self) -> Vec<(String, f64, chrono::DateTime<chrono::Utc>)> {
        let mut out = Vec::new();
        for d in self.store.devices().list(self.tenant).await.unwrap() {
            let from = chrono::DateTime::parse_from_rfc3339("2000-01-01T00:00:00Z").unwrap().to_utc();
            let to = chrono::Utc::now() + chrono::Duration::days(1);
            for r in self.store.readings().for_device(self.tenant, d.id, from, to, 10_000).await.unwrap() {
                out.push((d.code.to_string(), r.value, r.time));
            }
        }
        out.sort_by(|a, b| a.2.cmp(&b.2).then(a.0.cmp(&b.0)));
        out
    }

    pub async fn dead_letters(&self) -> Vec<RejectedSummary> {
        let mut items =
            self.store.rejected().staff_list(None, tds_store::Page::new(1, 500)).await.unwrap().items;
        items.sort_by_key(|r| (r.reading_index, r.id.get()));
        items
    }

    /// A dead letter of the tenant, whole.
    pub async fn dead_letter(&self, summary: &RejectedSummary) -> Rejected {
        self.store.rejected().get(self.tenant, summary.id).await.unwrap()
    }
}

pub struct Device {
    pub client: AsyncClient,
    pub events: EventLoop,
}

pub fn tls(ca_pem: &str, cert_pem: &str, key_pem: &str) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let certs = rustls_pemfile::certs(&mut cert_pem.as_bytes()).map(Result::unwrap).collect();
    let key = rustls_pemfile::private_key(&mut key_pem.as_bytes()).unwrap().unwrap();
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)
        .unwrap()
}

impl Device {
    /// Connects and waits for the CONNACK; `Err` names the refusal (return code or TLS error).
    pub async fn connect(
        port: u16,
        ca_pem: &str,
        cert_pem: &str,
        key_pem: &str,
        client_id: &str,
    ) -> Result<Self, String> {
        Self::connect_with(port, Arc::new(tls(ca_pem, cert_pem, key_pem)), client_id).await
    }

    /// [`Self::connect`] with a client TLS configuration kept across connections, as a
    /// gateway's MQTT client keeps it: its session tickets let the next connection resume.
    pub async fn connect_with(
        port: u16,
        tls: Arc<rustls::ClientConfig>,
        client_id: &str,
    ) -> Result<Self, String> {
        let mut opts = MqttOptions::new(client_id, "localhost", port);
        opts.set_keep_alive(Duration::from_secs(5));
        opts.set_max_packet_size(2 * 1024 * 1024, 2 * 1024 * 1024);
        opts.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(tls)));
        Self::handshake(opts).await
    }

    /// Connects without TLS to the plain listener with a user name and password.
    pub async fn connect_plain(
        port: u16,
        client_id: &str,
        username: &str,
        password: &str,
    ) -> Result<Self, String> {
        let mut opts = MqttOptions::new(client_id, "127.0.0.1", port);
        opts.set_keep_alive(Duration::from_secs(5));
        opts.set_credentials(username, password);
        Self::handshake(opts).await
    }

    pub async fn handshake(opts: MqttOptions) -> Result<Self, String> {
        let (client, mut events) = AsyncClient::new(opts, 100);
        loop {
            match tokio::time::timeout(Duration::from_secs(10), events.poll()).await {
                Ok(Ok(Event::Incoming(Incoming::ConnAck(ack)))) => {
                    return if ack.code == ConnectReturnCode::Success {
                        Ok(Self { client, events })
                    } else {
                        Err(format!("{:?}", ack.code))
                    };
                }
                Ok(Ok(_)) => {}
                Ok(Err(ConnectionError::ConnectionRefused(code))) => return Err(format!("{code:?}")),
                Ok(Err(e)) => return Err(format!("{e}")),
                Err(_) => return Err("timeout".into()),
            }
        }
    }

    /// Publishes at `QoS` 1 and waits for the PUBACK (`Err` if the connection ends first).
    pub async fn publish(&mut self, topic: &str, payload: impl Into<Vec<u8>>) -> Result<(), String> {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload.into())
            .await
            .map_err(|e| e.to_string())?;
        loop {
            match tokio::time::timeout(Duration::from_secs(10), self.events.poll()).await {
                Ok(Ok(Event::Incoming(Incoming::PubAck(_)))) => return Ok(()),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(e.to_string()),
                Err(_) => return Err("no PUBACK within 10 s".into()),
            }
        }
    }

    /// Polls until the server closes the connection; `Err` if it is still open after `within`.
    pub async fn closed_within(&mut self, within: Duration) -> Result<Duration, String> {
        let start = std::time::Instant::now();
        loop {
            match tokio::time::timeout_at(tokio::time::Instant::from_std(start + within), self.events.poll())
                .await
            {
                Ok(Ok(_)) => {}
                Ok(Err(_)) => return Ok(start.elapsed()),
                Err(_) => return Err(format!("still open after {within:?}")),
            }
        }
    }
}

pub fn batch(mac: &str, readings: &str) -> String {
    format!(r#"{{"gateway_mac":"{mac}","timestamp":"2026-11-23T10:00:00Z","leituras":[{readings}]}}"#)
}

pub const TOPIC: &str = "tds_new/gateway/aa:bb:cc:00:00:01/telemetria";
