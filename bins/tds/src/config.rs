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
    "ca_passphrase",
    "device_cert_days",
    "crl_days",
    "log_level",
    "log_format",
    "public_url",
    "smtp_url",
    "mail_from",
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
    /// Passphrase of the CA key file, when it is encrypted. Never logged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_passphrase: Option<Secret>,
    /// Validity of device certificates, in days (SPEC §3: ten years).
    pub device_cert_days: u32,
    /// Validity of each issued CRL, in days; it is re-issued before it runs out.
    pub crl_days: u32,
    pub log_level: String,
    pub log_format: LogFormat,
    /// The address people use to reach the web UI (links in emails, the CSRF origin check,
    /// `Secure` cookies when https). Unset: `http://` + `http_addr`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
    /// SMTP server for invitations and password resets (`smtp://`, `smtps://`). Unset: messages
    /// are written to the log (development only). May hold a password: never logged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub smtp_url: Option<Secret>,
    /// Sender of TDS's emails.
    pub mail_from: String,
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
            ca_passphrase: None,
            device_cert_days: 3650,
            crl_days: 7,
            log_level: "info,sqlx=warn".into(),
            log_format: LogFormat::Text,
            public_url: None,
            smtp_url: None,
            mail_from: "TDS <tds@localhost>".into(),
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
        self.mqtt_addr
            .parse::<SocketAddr>()
            .with_context(|| format!("mqtt_addr {:?} is not an address like 0.0.0.0:8883", self.mqtt_addr))?;
        if !(1..=36_500).contains(&self.device_cert_days) {
            bail!("device_cert_days must be between 1 and 36500");
        }
        if !(1..=365).contains(&self.crl_days) {
            bail!("crl_days must be between 1 and 365");
        }
        if self.mqtt_public_host.trim().is_empty() {
            bail!("mqtt_public_host must name the host gateways connect to");
        }
        self.public_url()?;
        if tds_web::Mailer::log(&self.mail_from).is_err() {
            bail!("mail_from {:?} is not an address such as \"TDS <tds@example.com>\"", self.mail_from);
        }
        if self.db_max_connections == 0 {
            bail!("db_max_connections must be at least 1");
        }
        let url = self.database_url();
        if !(url.starts_with("sqlite:") || url.starts_with("postgres://") || url.starts_with("postgresql://"))
        {
            bail!(
                "database_url {:?} is not supported: use sqlite://PATH or postgres://USER:PASSWORD@HOST/DB",
                tds_store::redact_url(&url)
            );
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
    fn bad_values_name_the_key() {
        let bad = Config { http_addr: "localhost".into(), ..Config::default() };
        assert!(bad.validate().unwrap_err().to_string().contains("http_addr"));
        let bad = Config { database_url: Some("mysql://u:secret@h/db".into()), ..Config::default() };
        let msg = bad.validate().unwrap_err().to_string();
        assert!(msg.contains("database_url") && !msg.contains("secret"), "{msg}");
    }

    #[test]
    fn the_ca_passphrase_never_shows() {
        let c = Config { ca_passphrase: Some(Secret("hunter2".into())), ..Config::default() };
        assert!(!format!("{c:?}").contains("hunter2"));
        assert!(!c.to_redacted_toml().unwrap().contains("hunter2"));
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
