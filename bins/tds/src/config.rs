//! The configuration: built-in defaults, then a TOML file, then `TDS_*` environment variables.
//! Unknown keys in the file are errors (a typo must not silently fall back to a default), and every
//! value is checked here so that `tds serve` fails at start with a message naming the key.

use anyhow::{Context, bail};
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub const EXAMPLE: &str = include_str!("../../../config/tds.example.toml");

/// Keys that may come from `TDS_*` variables; other `TDS_*` variables (such as the test suite's
/// `TDS_TEST_DATABASE_URL`) are not configuration.
const ENV_KEYS: &[&str] = &[
    "data_dir",
    "database_url",
    "db_max_connections",
    "http_addr",
    "mqtt_addr",
    "mqtt_public_host",
    "mqtt_mode",
    "mqtt_plain_addr",
    "mqtt_plain_password",
    "mqtt_max_message_bytes",
    "mqtt_max_readings",
    "mqtt_connect_timeout_secs",
    "mqtt_max_handshakes",
    "mqtt_connects_per_second_per_ip",
    "mqtt_connect_burst_per_ip",
    "mqtt_max_keep_alive_secs",
    "mqtt_write_timeout_secs",
    "mqtt_messages_per_second",
    "mqtt_message_burst",
    "mqtt_status_interval_secs",
    "mqtt_commit_max_readings",
    "mqtt_queue_capacity",
    "mqtt_queue_readings",
    "dead_letter_max_bytes",
    "dead_letter_retention_days",
    "audit_retention_days",
    "connection_history_retention_days",
    "expired_token_retention_days",
    "job_lease_secs",
    "broker_url",
    "broker_client_id",
    "broker_ca_file",
    "broker_crl_file",
    "ca_passphrase",
    "device_cert_days",
    "crl_days",
    "renewal_per_day",
    "renewal_per_day_per_tenant",
    "log_level",
    "log_format",
    "public_url",
    "smtp_url",
    "mail_from",
    "alert_send_timeout_secs",
    "alert_send_parallel",
    "first_admin_email",
    "metrics_addr",
    "trusted_proxies",
    "http_max_connections",
    "http_header_timeout_s",
    "http_body_timeout_s",
    "session_idle_hours",
    "session_absolute_hours",
    "max_concurrent_password_hashes",
    "max_range_days",
    "import_max_rows",
    "import_max_bytes",
    "api_rate_per_second",
    "api_burst",
];

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub data_dir: PathBuf,
    pub database_url: Option<String>,
    pub db_max_connections: u32,
    pub http_addr: String,
    pub mqtt_addr: String,
    /// The host name gateways use to reach the MQTT endpoint: written into certificate bundles and
    /// into the MQTT server certificate's names.
    pub mqtt_public_host: String,
    /// `endpoint`: TDS terminates MQTT itself on `mqtt_addr`; `broker`: it consumes from the
    /// external broker at `broker_url` instead (scale-out mode, SPEC §2).
    pub mqtt_mode: MqttMode,
    /// A plain MQTT listener (no TLS; user name = gateway MAC, password = `mqtt_plain_password`)
    /// for development only. Unset: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mqtt_plain_addr: Option<String>,
    /// The plain listener's password, required with it. Never logged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mqtt_plain_password: Option<Secret>,
    /// Largest telemetry message, in bytes (SPEC §2); a larger one is a dead letter.
    pub mqtt_max_message_bytes: usize,
    /// Most readings in one telemetry batch; a larger batch is refused whole as one dead letter.
    pub mqtt_max_readings: usize,
    /// Seconds allowed for a TLS handshake, and again for the CONNECT packet.
    pub mqtt_connect_timeout_secs: u64,
    /// TLS handshakes in progress at once; new connections beyond them are closed at once.
    pub mqtt_max_handshakes: usize,
    /// New connections per second from one source address (sustained rate)…
    pub mqtt_connects_per_second_per_ip: f64,
    /// …and at once (burst); beyond them a new connection is closed at once.
    pub mqtt_connect_burst_per_ip: u32,
    /// The keep-alive given to a gateway asking for none (0) or for more; in seconds.
    pub mqtt_max_keep_alive_secs: u64,
    /// A session whose socket does not take a packet within this many seconds is closed.
    pub mqtt_write_timeout_secs: u64,
    /// Messages per second read from one gateway (sustained rate)…
    pub mqtt_messages_per_second: f64,
    /// …and at once (burst); beyond them TDS stops reading that gateway's socket for a while.
    pub mqtt_message_burst: u32,
    /// A gateway's status (online/offline) and connection history are written at most once per
    /// this many seconds; the latest status is written when the interval ends.
    pub mqtt_status_interval_secs: u64,
    /// Most readings the writer commits in one transaction (the messages waiting are taken up to
    /// this many readings).
    pub mqtt_commit_max_readings: usize,
    /// Messages waiting for the writer; when it is full, sessions stop reading their sockets
    /// (gateways are slowed down, nothing is held in memory beyond it).
    pub mqtt_queue_capacity: usize,
    /// Readings waiting for the writer, the same way (a message without readings counts as one).
    pub mqtt_queue_readings: usize,
    /// Most bytes of a refused payload a dead letter keeps (its size as received is recorded).
    pub dead_letter_max_bytes: usize,
    /// Days dead letters are kept before the daily retention job deletes them.
    pub dead_letter_retention_days: u32,
    /// Days audit-log entries are kept.
    pub audit_retention_days: u32,
    /// Days a gateway's connection history (connects, disconnects, refusals) is kept.
    pub connection_history_retention_days: u32,
    /// Days invitation and password-reset tokens are kept after they expire.
    pub expired_token_retention_days: u32,
    /// Seconds a background job's lease lasts without renewal: how long the other instances wait
    /// before taking over the jobs of an instance that died.
    pub job_lease_secs: u64,
    /// Broker mode: `mqtts://HOST:PORT` of the external broker.
    pub broker_url: String,
    /// Broker mode: this instance's MQTT client id, stable across restarts and different for
    /// every instance (the broker keeps unacknowledged messages under it). Unset:
    /// `tds-ingest-{host name}-{HTTP port}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker_client_id: Option<String>,
    /// Broker mode: the CA certificate that signed the broker's server certificate. Unset: the
    /// platform CA (as `tds broker-config` sets the broker up).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker_ca_file: Option<PathBuf>,
    /// The external broker's CRL file (its `crlfile`), rewritten whenever revocations change.
    /// The broker reads it at start and on SIGHUP. Unset: not written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker_crl_file: Option<PathBuf>,
    /// Passphrase of the CA key file, when it is encrypted. Never logged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_passphrase: Option<Secret>,
    /// Validity of device certificates, in days (SPEC §3: ten years).
    pub device_cert_days: u32,
    /// Validity of each issued CRL, in days; it is re-issued before it runs out.
    pub crl_days: u32,
    /// Certificate renewals the campaign starts per day on the whole platform (SPEC §3)…
    pub renewal_per_day: u32,
    /// …and per tenant (manual renewals are outside both).
    pub renewal_per_day_per_tenant: u32,
    pub log_level: String,
    pub log_format: LogFormat,
    /// The address people use to reach the web UI (links in emails, the CSRF origin check,
    /// `Secure` cookies when https). Unset: `http://` + `http_addr`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
    /// SMTP server for invitations and password resets (`smtp://`, `smtps://`). Unset: messages
    /// are written as files to `{data_dir}/outbox` (development only). May hold a password: never logged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub smtp_url: Option<Secret>,
    /// Sender of TDS's emails.
    pub mail_from: String,
    /// Longest wait for one alert notification (an SMTP transaction, a webhook's answer); a
    /// delivery that takes longer is retried with back-off.
    pub alert_send_timeout_secs: u64,
    /// Alert notifications in flight at once (each destination sends one at a time).
    pub alert_send_parallel: u32,
    /// Login of the administrator created on first start. Unset: `admin-` and six random hex
    /// digits at the public URL's host (printed once with the password).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_admin_email: Option<String>,
    /// A separate listener for `/metrics` (and the health checks), e.g. `127.0.0.1:9464`. Unset:
    /// `/metrics` is on `http_addr` and answers only local requests that no proxy relayed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_addr: Option<String>,
    /// Reverse proxies (addresses or networks) whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<String>,
    /// Open HTTP connections at most; more are closed at once.
    pub http_max_connections: usize,
    /// Seconds allowed for a request's headers (and between requests on a kept-alive connection).
    pub http_header_timeout_s: u64,
    /// Seconds allowed for a request's whole body.
    pub http_body_timeout_s: u64,
    /// API requests a second each token may make, sustained…
    pub api_rate_per_second: u32,
    /// …and at once.
    pub api_burst: u32,
    /// A session ends after this many hours without use…
    pub session_idle_hours: u64,
    /// …and this many hours after login, however busy.
    pub session_absolute_hours: u64,
    /// Password hashes (argon2id, ~19 MiB each) at once. Unset: the number of cores.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_concurrent_password_hashes: Option<usize>,
    /// Longest custom range of a chart, in days.
    pub max_range_days: u32,
    /// Most data rows in one CSV import (web page and `tds gateway|device import`).
    pub import_max_rows: usize,
    /// Most bytes in one CSV import file.
    pub import_max_bytes: usize,
}

/// A secret setting: usable through [`Secret::expose`], shown as `***` by `Debug`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MqttMode {
    Endpoint,
    Broker,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./data"),
            database_url: None,
            db_max_connections: 8,
            http_addr: "127.0.0.1:8080".into(),
            mqtt_addr: "0.0.0.0:8883".into(),
            mqtt_public_host: "localhost".into(),
            mqtt_mode: MqttMode::Endpoint,
            mqtt_plain_addr: None,
            mqtt_plain_password: None,
            mqtt_max_message_bytes: 256 * 1024,
            mqtt_max_readings: 1_000,
            mqtt_connect_timeout_secs: 10,
            mqtt_max_handshakes: 256,
            mqtt_connects_per_second_per_ip: 5.0,
            mqtt_connect_burst_per_ip: 20,
            mqtt_max_keep_alive_secs: 1_200,
            mqtt_write_timeout_secs: 30,
            mqtt_messages_per_second: 50.0,
            mqtt_message_burst: 200,
            mqtt_status_interval_secs: 5,
            mqtt_commit_max_readings: 100_000,
            mqtt_queue_capacity: 16_384,
            mqtt_queue_readings: 100_000,
            dead_letter_max_bytes: 64 * 1024,
            dead_letter_retention_days: 90,
            audit_retention_days: 730,
            connection_history_retention_days: 365,
            expired_token_retention_days: 30,
            job_lease_secs: 60,
            broker_url: "mqtts://localhost:8883".into(),
            broker_client_id: None,
            broker_ca_file: None,
            broker_crl_file: None,
            ca_passphrase: None,
            device_cert_days: 3650,
            crl_days: 7,
            renewal_per_day: 10,
            renewal_per_day_per_tenant: 10,
            log_level: "info,sqlx=warn".into(),
            log_format: LogFormat::Text,
            public_url: None,
            smtp_url: None,
            mail_from: "TDS <tds@localhost>".into(),
            alert_send_timeout_secs: 10,
            alert_send_parallel: 16,
            first_admin_email: None,
            metrics_addr: None,
            trusted_proxies: Vec::new(),
            http_max_connections: 1024,
            http_header_timeout_s: 10,
            http_body_timeout_s: 60,
            api_rate_per_second: tds_web::config::DEFAULT_API_RATE.get(),
            api_burst: tds_web::config::DEFAULT_API_BURST.get(),
            session_idle_hours: 12,
            session_absolute_hours: 7 * 24,
            max_concurrent_password_hashes: None,
            max_range_days: tds_web::config::DEFAULT_MAX_RANGE_DAYS,
            import_max_rows: tds_domain::import_rows::DEFAULT_MAX_ROWS,
            import_max_bytes: tds_domain::import_rows::DEFAULT_MAX_BYTES,
        }
    }
}

impl Config {
    /// Loads defaults, then `file` when given (it must exist), then the environment.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.is_file() {
                bail!("configuration file {} does not exist", path.display());
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        figment = figment.merge(Env::prefixed("TDS_").only(ENV_KEYS));
        let config: Config = figment.extract().map_err(|e| {
            anyhow::anyhow!("invalid configuration: {e}. See `tds config example` for every setting.")
        })?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        self.http_socket()?;
        self.validate_limits()?;
        self.mqtt_addr
            .parse::<SocketAddr>()
            .with_context(|| format!("mqtt_addr {:?} is not an address like 0.0.0.0:8883", self.mqtt_addr))?;
        if !(1..=36_500).contains(&self.device_cert_days) {
            bail!("device_cert_days must be between 1 and 36500");
        }
        if self.renewal_per_day > 1_000_000 || self.renewal_per_day_per_tenant > 1_000_000 {
            bail!("renewal_per_day and renewal_per_day_per_tenant must be at most 1000000");
        }
        if !(1..=365).contains(&self.crl_days) {
            bail!("crl_days must be between 1 and 365");
        }
        self.mqtt_plain()?;
        self.broker_address()?;
        if let Some(id) = &self.broker_client_id
            && (id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_graphic()))
        {
            bail!("broker_client_id {id:?} must be 1 to 64 printable characters without spaces");
        }
        if self.mqtt_public_host.trim().is_empty() {
            bail!("mqtt_public_host must name the host gateways connect to");
        }
        self.public_url()?;
        if tds_mail::Mailer::check_from(&self.mail_from).is_err() {
            bail!("mail_from {:?} is not an address such as \"TDS <tds@example.com>\"", self.mail_from);
        }
        if self.db_max_connections == 0 {
            bail!("db_max_connections must be at least 1");
        }
        self.import_limits()?;
        let url = self.database_url();
        if !(url.starts_with("sqlite:") || url.starts_with("postgres://") || url.starts_with("postgresql://"))
        {
            bail!(
                "database_url {:?} is not supported: use sqlite://PATH or postgres://USER:PASSWORD@HOST/DB",
                tds_store::redact_url(&url)
            );
        }
        if let Some(email) = &self.first_admin_email {
            tds_domain::Email::parse(email)
                .map_err(|e| anyhow::anyhow!("first_admin_email {email:?} is not an email address: {e}"))?;
        }
        self.metrics_socket()?;
        tds_web::proxy::parse_trusted(&self.trusted_proxies).map_err(|e| anyhow::anyhow!(e))?;
        for (key, value, range) in [
            ("http_max_connections", self.http_max_connections as u64, 1..=1_000_000),
            ("http_header_timeout_s", self.http_header_timeout_s, 1..=3600),
            ("http_body_timeout_s", self.http_body_timeout_s, 1..=3600),
            ("api_rate_per_second", u64::from(self.api_rate_per_second), 1..=1_000_000),
            ("api_burst", u64::from(self.api_burst), 1..=1_000_000),
            ("alert_send_timeout_secs", self.alert_send_timeout_secs, 1..=300),
            ("alert_send_parallel", u64::from(self.alert_send_parallel), 1..=256),
            ("session_idle_hours", self.session_idle_hours, 1..=24 * 365),
            ("session_absolute_hours", self.session_absolute_hours, 1..=24 * 365),
            (
                "max_concurrent_password_hashes",
                self.max_concurrent_password_hashes.unwrap_or(1) as u64,
                1..=1024,
            ),
            ("max_range_days", u64::from(self.max_range_days), 1..=36_600),
        ] {
            if !range.contains(&value) {
                bail!("{key} must be between {} and {}", range.start(), range.end());
            }
        }
        if self.session_absolute_hours < self.session_idle_hours {
            bail!("session_absolute_hours must be at least session_idle_hours");
        }
        tracing_subscriber::EnvFilter::try_new(&self.log_level).with_context(|| {
            format!("log_level {:?} is not a valid filter such as \"info\"", self.log_level)
        })?;
        Ok(())
    }

    /// The public URL in force: the configured one, else derived from the HTTP address.
    pub fn public_url(&self) -> anyhow::Result<url::Url> {
        let text = if let Some(u) = &self.public_url {
            u.clone()
        } else {
            let addr = self.http_socket()?;
            let host =
                if addr.ip().is_unspecified() { "localhost".to_owned() } else { addr.ip().to_string() };
            format!("http://{host}:{}", addr.port())
        };
        let url = url::Url::parse(&text).with_context(|| format!("public_url {text:?} is not a URL"))?;
        if !matches!(url.scheme(), "http" | "https") {
            bail!("public_url {text:?} must start with http:// or https://");
        }
        Ok(url)
    }

    /// The plain development listener's address and password, when it is enabled.
    pub fn mqtt_plain(&self) -> anyhow::Result<Option<(SocketAddr, &str)>> {
        let Some(addr) = &self.mqtt_plain_addr else { return Ok(None) };
        let addr: SocketAddr = addr
            .parse()
            .with_context(|| format!("mqtt_plain_addr {addr:?} is not an address like 127.0.0.1:1883"))?;
        if self.mqtt_mode == MqttMode::Broker {
            bail!(
                "mqtt_plain_addr is a listener of the device endpoint: unset it in broker mode (mqtt_mode = \"broker\")"
            );
        }
        match self.mqtt_plain_password.as_ref().map(Secret::expose) {
            Some(p) if !p.is_empty() => Ok(Some((addr, p))),
            _ => bail!(
                "mqtt_plain_addr needs mqtt_plain_password: the plain listener checks every gateway's password"
            ),
        }
    }

    /// The external broker's host and port, from `broker_url` (`mqtts://HOST[:PORT]`, 8883 by
    /// default).
    pub fn broker_address(&self) -> anyhow::Result<(String, u16)> {
        let bad =
            || format!("broker_url {:?} is not a URL like mqtts://broker.example.com:8883", self.broker_url);
        let url = url::Url::parse(&self.broker_url).with_context(bad)?;
        if url.scheme() != "mqtts" {
            bail!(
                "broker_url {:?} must start with mqtts:// (TDS talks to the broker over mutual TLS)",
                self.broker_url
            );
        }
        let host = url.host_str().filter(|h| !h.is_empty()).with_context(bad)?;
        let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
        Ok((host, url.port().unwrap_or(tds_pki::DEFAULT_MQTT_TLS_PORT)))
    }

    /// This instance's client id at the external broker.
    pub fn broker_client_id(&self) -> String {
        if let Some(id) = &self.broker_client_id {
            return id.clone();
        }
        let host = ["/proc/sys/kernel/hostname", "/etc/hostname"]
            .iter()
            .find_map(|f| std::fs::read_to_string(f).ok())
            .map(|h| h.trim().chars().filter(char::is_ascii_graphic).collect::<String>())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".to_owned());
        let port = self.http_socket().map_or(0, |a| a.port());
        format!("tds-ingest-{host}-{port}")
    }

    /// The separate metrics listener's address, when there is one.
    pub fn metrics_socket(&self) -> anyhow::Result<Option<SocketAddr>> {
        self.metrics_addr
            .as_ref()
            .map(|a| {
                a.parse().with_context(|| format!("metrics_addr {a:?} is not an address like 127.0.0.1:9464"))
            })
            .transpose()
    }

    /// The web application's settings.
    pub fn web_config(&self) -> anyhow::Result<tds_web::WebConfig> {
        use std::time::Duration;
        let mut web = tds_web::WebConfig::new(self.public_url()?);
        web.trusted_proxies =
            tds_web::proxy::parse_trusted(&self.trusted_proxies).map_err(|e| anyhow::anyhow!(e))?;
        web.max_connections = self.http_max_connections;
        web.header_timeout = Duration::from_secs(self.http_header_timeout_s);
        web.body_timeout = Duration::from_secs(self.http_body_timeout_s);
        web.session_idle = Duration::from_hours(self.session_idle_hours);
        web.session_absolute = Duration::from_hours(self.session_absolute_hours);
        if let Some(n) = self.max_concurrent_password_hashes {
            web.max_concurrent_hashes = n;
        }
        web.max_range_days = self.max_range_days;
        web.import_limits = self.import_limits()?;
        web.api_rate_per_second = std::num::NonZeroU32::new(self.api_rate_per_second)
            .context("api_rate_per_second must be at least 1")?;
        web.api_burst = std::num::NonZeroU32::new(self.api_burst).context("api_burst must be at least 1")?;
        Ok(web)
    }

    /// Checks the device endpoint's limits (SPEC §2 Limits): every one must be positive.
    fn validate_limits(&self) -> anyhow::Result<()> {
        let counts = [
            ("mqtt_max_message_bytes", self.mqtt_max_message_bytes as u64),
            ("mqtt_max_readings", self.mqtt_max_readings as u64),
            ("mqtt_connect_timeout_secs", self.mqtt_connect_timeout_secs),
            ("mqtt_max_handshakes", self.mqtt_max_handshakes as u64),
            ("mqtt_connect_burst_per_ip", u64::from(self.mqtt_connect_burst_per_ip)),
            ("mqtt_max_keep_alive_secs", self.mqtt_max_keep_alive_secs),
            ("mqtt_write_timeout_secs", self.mqtt_write_timeout_secs),
            ("mqtt_message_burst", u64::from(self.mqtt_message_burst)),
            ("mqtt_commit_max_readings", self.mqtt_commit_max_readings as u64),
            ("mqtt_queue_capacity", self.mqtt_queue_capacity as u64),
            ("mqtt_queue_readings", self.mqtt_queue_readings as u64),
            ("dead_letter_max_bytes", self.dead_letter_max_bytes as u64),
            ("dead_letter_retention_days", u64::from(self.dead_letter_retention_days)),
            ("audit_retention_days", u64::from(self.audit_retention_days)),
            ("connection_history_retention_days", u64::from(self.connection_history_retention_days)),
            ("expired_token_retention_days", u64::from(self.expired_token_retention_days)),
            ("job_lease_secs", self.job_lease_secs),
        ];
        for (key, value) in counts {
            if value == 0 {
                bail!("{key} must be more than 0");
            }
        }
        for (key, value) in [
            ("mqtt_connects_per_second_per_ip", self.mqtt_connects_per_second_per_ip),
            ("mqtt_messages_per_second", self.mqtt_messages_per_second),
        ] {
            if !(value.is_finite() && value > 0.0) {
                bail!("{key} must be a number more than 0");
            }
        }
        if self.mqtt_max_message_bytes > 16 * 1024 * 1024 {
            bail!("mqtt_max_message_bytes must be at most 16 MiB");
        }
        Ok(())
    }

    /// The device endpoint's limits of this configuration, set on `ingest`.
    pub fn apply_ingest_limits(&self, ingest: &mut tds_ingest::IngestConfig) {
        use std::time::Duration;
        ingest.max_message_bytes = self.mqtt_max_message_bytes;
        // A packet a little over the message limit is still read, to be kept as a dead letter.
        ingest.max_packet_bytes = ingest.max_packet_bytes.max(self.mqtt_max_message_bytes + 64 * 1024);
        ingest.max_readings = self.mqtt_max_readings;
        ingest.dead_letter_max_bytes = self.dead_letter_max_bytes;
        ingest.connect_timeout = Duration::from_secs(self.mqtt_connect_timeout_secs);
        ingest.max_handshakes = self.mqtt_max_handshakes;
        ingest.connects_per_second_per_ip = self.mqtt_connects_per_second_per_ip;
        ingest.connect_burst_per_ip = self.mqtt_connect_burst_per_ip;
        ingest.max_keep_alive = Duration::from_secs(self.mqtt_max_keep_alive_secs);
        ingest.write_timeout = Duration::from_secs(self.mqtt_write_timeout_secs);
        ingest.messages_per_second = self.mqtt_messages_per_second;
        ingest.message_burst = self.mqtt_message_burst;
        ingest.status_interval = Duration::from_secs(self.mqtt_status_interval_secs);
        ingest.commit_max_readings = self.mqtt_commit_max_readings;
        ingest.queue_capacity = self.mqtt_queue_capacity;
        ingest.queue_readings = self.mqtt_queue_readings;
    }

    /// How long dead letters are kept.
    pub fn dead_letter_retention(&self) -> chrono::TimeDelta {
        chrono::TimeDelta::days(i64::from(self.dead_letter_retention_days))
    }

    /// How long the daily retention job keeps each kind of row.
    pub fn retention_horizons(&self) -> tds_jobs::retention::Horizons {
        let days = |d: u32| chrono::TimeDelta::days(i64::from(d));
        tds_jobs::retention::Horizons {
            dead_letters: self.dead_letter_retention(),
            audit_log: days(self.audit_retention_days),
            connection_history: days(self.connection_history_retention_days),
            expired_tokens: days(self.expired_token_retention_days),
        }
    }

    /// The job runner's timings.
    pub fn runner_options(&self) -> tds_jobs::RunnerOptions {
        tds_jobs::RunnerOptions {
            lease: std::time::Duration::from_secs(self.job_lease_secs),
            ..tds_jobs::RunnerOptions::default()
        }
    }

    pub fn http_socket(&self) -> anyhow::Result<SocketAddr> {
        self.http_addr
            .parse()
            .with_context(|| format!("http_addr {:?} is not an address like 127.0.0.1:8080", self.http_addr))
    }

    /// The database URL in force: the configured one, or the embedded SQLite file in `data_dir`.
    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("tds.db").display()))
    }

    /// The bounds of a CSV import.
    pub fn import_limits(&self) -> anyhow::Result<tds_domain::import_rows::ImportLimits> {
        tds_domain::import_rows::ImportLimits::new(self.import_max_rows, self.import_max_bytes).map_err(|e| {
            anyhow::anyhow!(
                "{e} (import_max_rows up to {}, import_max_bytes up to {})",
                tds_domain::import_rows::CEILING_ROWS,
                tds_domain::import_rows::CEILING_BYTES
            )
        })
    }

    pub fn db_options(&self) -> tds_store::DbOptions {
        tds_store::DbOptions { max_connections: self.db_max_connections, ..Default::default() }
    }

    /// Where the CA and the MQTT server certificate live.
    pub fn pki_dir(&self) -> PathBuf {
        self.data_dir.join("pki")
    }

    /// The configuration as TOML with the database password hidden, for `config check`.
    pub fn to_redacted_toml(&self) -> anyhow::Result<String> {
        let mut shown = self.clone();
        shown.database_url = Some(tds_store::redact_url(&self.database_url()));
        shown.ca_passphrase = self.ca_passphrase.as_ref().map(|_| Secret("***".to_owned()));
        shown.smtp_url = self.smtp_url.as_ref().map(|_| Secret("***".to_owned()));
        shown.mqtt_plain_password = self.mqtt_plain_password.as_ref().map(|_| Secret("***".to_owned()));
        Ok(toml::to_string(&shown)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_file_is_valid_and_matches_the_defaults() {
        let example: Config = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string(EXAMPLE))
            .extract()
            .unwrap();
        assert_eq!(example, Config::default());
        example.validate().unwrap();
        assert_eq!(example.database_url(), "sqlite://./data/tds.db");
    }

    #[test]
    fn the_default_limits_are_the_endpoints_own() {
        let mut from_config = tds_ingest::IngestConfig::new("127.0.0.1:0".parse().unwrap());
        Config::default().apply_ingest_limits(&mut from_config);
        let own = tds_ingest::IngestConfig::new("127.0.0.1:0".parse().unwrap());
        assert_eq!(
            format!("{from_config:?}"),
            format!("{own:?}"),
            "a setting's default must be the endpoint's default"
        );
        assert_eq!(Config::default().retention_horizons(), tds_jobs::retention::Horizons::default());
    }

    #[test]
    fn bad_values_name_the_key() {
        let bad = Config { http_addr: "localhost".into(), ..Config::default() };
        assert!(bad.validate().unwrap_err().to_string().contains("http_addr"));
        let bad = Config { mqtt_max_handshakes: 0, ..Config::default() };
        assert!(bad.validate().unwrap_err().to_string().contains("mqtt_max_handshakes"));
        let bad = Config { mqtt_messages_per_second: f64::NAN, ..Config::default() };
        assert!(bad.validate().unwrap_err().to_string().contains("mqtt_messages_per_second"));
        let bad = Config { database_url: Some("mysql://u:secret@h/db".into()), ..Config::default() };
        let msg = bad.validate().unwrap_err().to_string();
        assert!(msg.contains("database_url") && !msg.contains("secret"), "{msg}");
        let bad = Config { import_max_rows: 0, ..Config::default() };
        assert!(bad.validate().unwrap_err().to_string().contains("import_max_rows"));
        let bad = Config { import_max_bytes: 64 * 1024 * 1024, ..Config::default() };
        assert!(bad.validate().unwrap_err().to_string().contains("import_max_bytes"));
    }

    #[test]
    fn the_ca_passphrase_never_shows() {
        let c = Config { ca_passphrase: Some(Secret("hunter2".into())), ..Config::default() };
        assert!(!format!("{c:?}").contains("hunter2"));
        assert!(!c.to_redacted_toml().unwrap().contains("hunter2"));
    }

    #[test]
    fn the_plain_listener_needs_a_password_and_the_endpoint_mode() {
        assert_eq!(Config::default().mqtt_plain().unwrap(), None, "off by default");
        let no_password = Config { mqtt_plain_addr: Some("127.0.0.1:1883".into()), ..Config::default() };
        let msg = no_password.validate().unwrap_err().to_string();
        assert!(msg.contains("mqtt_plain_password"), "{msg}");
        let empty = Config { mqtt_plain_password: Some(Secret(String::new())), ..no_password.clone() };
        assert!(empty.validate().is_err());
        let on = Config { mqtt_plain_password: Some(Secret("dev".into())), ..no_password.clone() };
        on.validate().unwrap();
        assert_eq!(on.mqtt_plain().unwrap(), Some(("127.0.0.1:1883".parse().unwrap(), "dev")));
        assert!(!on.to_redacted_toml().unwrap().contains("\"dev\""));
        let broker = Config { mqtt_mode: MqttMode::Broker, ..on };
        assert!(broker.validate().unwrap_err().to_string().contains("broker mode"));
    }

    #[test]
    fn the_broker_url_is_mqtts_with_8883_by_default() {
        let c = Config { broker_url: "mqtts://broker.example.com".into(), ..Config::default() };
        assert_eq!(c.broker_address().unwrap(), ("broker.example.com".to_owned(), 8883));
        let c = Config { broker_url: "mqtts://127.0.0.1:18883".into(), ..Config::default() };
        assert_eq!(c.broker_address().unwrap(), ("127.0.0.1".to_owned(), 18883));
        for bad in ["mqtt://broker:1883", "broker:8883", "mqtts://"] {
            let c = Config { broker_url: bad.into(), ..Config::default() };
            assert!(c.validate().unwrap_err().to_string().contains("broker_url"), "{bad}");
        }
        let c = Config { broker_client_id: Some("has space".into()), ..Config::default() };
        assert!(c.validate().unwrap_err().to_string().contains("broker_client_id"));
        let id = Config { http_addr: "127.0.0.1:9090".into(), ..Config::default() }.broker_client_id();
        assert!(id.starts_with("tds-ingest-") && id.ends_with("-9090"), "{id}");
    }

    #[test]
    fn unknown_keys_in_the_file_are_refused() {
        let err = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string("htp_addr = \"1.2.3.4:80\""))
            .extract::<Config>()
            .unwrap_err();
        assert!(err.to_string().contains("htp_addr"), "{err}");
    }
}
