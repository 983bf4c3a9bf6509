//! The agent's configuration file (SPEC §10): TOML, parsed strictly (an unknown or misspelt key
//! is an error that names it), then checked as a whole (every meter names a known bus, codes are
//! unique, numbers are in range). Owns nothing else: no I/O beyond reading the file.

use serde::Deserialize;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tds_domain::Mac;

/// Why a configuration cannot be used; the message names the file and the bad key or value.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: {key}: {message}")]
    Invalid { path: PathBuf, key: String, message: String },
}

/// The whole configuration, as written in the file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The gateway's identity, = its certificate's CN (any separator or case; normalised).
    pub mac: String,
    #[serde(default = "default_poll_seconds")]
    pub poll_seconds: u64,
    pub data_dir: PathBuf,
    pub mqtt: MqttConfig,
    #[serde(default)]
    pub queue: QueueConfig,
    #[serde(default, rename = "bus")]
    pub buses: Vec<BusConfig>,
    #[serde(default, rename = "meter")]
    pub meters: Vec<MeterConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    pub host: String,
    #[serde(default = "default_mqtt_port")]
    pub port: u16,
    pub ca_file: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    #[serde(default = "default_keep_alive")]
    pub keep_alive_seconds: u64,
    /// Batches sent and not yet acknowledged, at most.
    #[serde(default = "default_window")]
    pub window: u16,
    /// How long a new certificate has to be accepted before the agent goes back to the old one.
    #[serde(default = "default_swap_timeout")]
    pub cert_swap_timeout_seconds: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    /// Bound of the disk queue; beyond it the oldest batches are dropped (and counted).
    #[serde(default = "default_queue_bytes")]
    pub max_bytes: u64,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self { max_bytes: default_queue_bytes() }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BusKind {
    Rtu,
    Tcp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Parity {
    None,
    Even,
    Odd,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusConfig {
    pub name: String,
    pub kind: BusKind,
    /// rtu: the serial device.
    pub device: Option<PathBuf>,
    #[serde(default = "default_baud")]
    pub baud: u32,
    #[serde(default = "default_parity")]
    pub parity: Parity,
    #[serde(default = "default_stop_bits")]
    pub stop_bits: u8,
    /// tcp: the Modbus TCP server (or RS-485 gateway).
    pub host: Option<String>,
    pub port: Option<u16>,
    /// Time one request may take before it is given up.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Tries after the first one fails.
    #[serde(default = "default_retries")]
    pub retries: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Function {
    Holding,
    Input,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ValueType {
    U16,
    I16,
    U32,
    I32,
    U64,
    F32,
    F64,
}

impl ValueType {
    /// Registers (16-bit words) the value spans.
    pub const fn words(self) -> u16 {
        match self {
            Self::U16 | Self::I16 => 1,
            Self::U32 | Self::I32 | Self::F32 => 2,
            Self::U64 | Self::F64 => 4,
        }
    }
}

/// Order of the 16-bit words of a 32/64-bit value; bytes within a word are always big-endian
/// (Modbus). `big`: most significant word first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WordOrder {
    Big,
    Little,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeterConfig {
    pub code: String,
    pub bus: String,
    pub slave: u8,
    /// 0-based register address.
    pub register: u16,
    #[serde(default = "default_function")]
    pub function: Function,
    #[serde(rename = "type")]
    pub value_type: ValueType,
    #[serde(default = "default_word_order")]
    pub word_order: WordOrder,
    #[serde(default = "default_scale")]
    pub scale: f64,
    pub unit: Option<String>,
}

const fn default_poll_seconds() -> u64 {
    60
}
const fn default_mqtt_port() -> u16 {
    8883
}
const fn default_keep_alive() -> u64 {
    60
}
const fn default_window() -> u16 {
    8
}
const fn default_swap_timeout() -> u64 {
    30
}
const fn default_queue_bytes() -> u64 {
    64 * 1024 * 1024
}
const fn default_baud() -> u32 {
    9600
}
const fn default_parity() -> Parity {
    Parity::None
}
const fn default_stop_bits() -> u8 {
    1
}
const fn default_timeout_ms() -> u64 {
    1000
}
const fn default_retries() -> u32 {
    2
}
const fn default_function() -> Function {
    Function::Holding
}
const fn default_word_order() -> WordOrder {
    WordOrder::Big
}
const fn default_scale() -> f64 {
    1.0
}

impl Config {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        Self::parse(&text, path)
    }

    /// Parses and checks `text` (read from `path`, named in errors).
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        // toml's message names the key (`unknown field `baudrate``) and shows the line.
        let config: Self = toml::from_str(text)
            .map_err(|e| ConfigError::Parse { path: path.to_owned(), message: e.to_string() })?;
        config.check(path)?;
        Ok(config)
    }

    fn check(&self, path: &Path) -> Result<(), ConfigError> {
        let bad = |key: String, message: String| ConfigError::Invalid { path: path.to_owned(), key, message };
        Mac::parse(&self.mac).map_err(|e| bad("mac".into(), e.to_string()))?;
        if self.poll_seconds == 0 || self.poll_seconds > 86_400 {
            return Err(bad("poll_seconds".into(), "must be between 1 and 86400".into()));
        }
        if self.mqtt.window == 0 {
            return Err(bad("mqtt.window".into(), "must be at least 1".into()));
        }
        if self.queue.max_bytes < 64 * 1024 {
            return Err(bad("queue.max_bytes".into(), "must be at least 65536".into()));
        }
        let mut names = HashSet::new();
        for (i, bus) in self.buses.iter().enumerate() {
            let key = |k: &str| format!("bus[{i}].{k}");
            if !names.insert(bus.name.as_str()) {
                return Err(bad(key("name"), format!("bus `{}` is defined twice", bus.name)));
            }
            match bus.kind {
                BusKind::Rtu => {
                    if bus.device.is_none() {
                        return Err(bad(key("device"), "an rtu bus needs its serial device".into()));
                    }
                    if !matches!(bus.stop_bits, 1 | 2) {
                        return Err(bad(key("stop_bits"), "must be 1 or 2".into()));
                    }
                }
                BusKind::Tcp => {
                    if bus.host.is_none() {
                        return Err(bad(key("host"), "a tcp bus needs its host".into()));
                    }
                }
            }
            if bus.timeout_ms == 0 {
                return Err(bad(key("timeout_ms"), "must be at least 1".into()));
            }
        }
        let mut codes = HashSet::new();
        for (i, meter) in self.meters.iter().enumerate() {
            let key = |k: &str| format!("meter[{i}].{k}");
            if meter.code.trim().is_empty() {
                return Err(bad(key("code"), "must not be empty".into()));
            }
            if !codes.insert(meter.code.to_ascii_lowercase()) {
                return Err(bad(key("code"), format!("device code `{}` appears twice", meter.code)));
            }
            if !names.contains(meter.bus.as_str()) {
                return Err(bad(key("bus"), format!("no [[bus]] is named `{}`", meter.bus)));
            }
            if meter.slave > 247 {
                return Err(bad(key("slave"), "must be between 0 and 247".into()));
            }
            if u32::from(meter.register) + u32::from(meter.value_type.words()) > 65_536 {
                return Err(bad(key("register"), "the value runs past register 65535".into()));
            }
            if !meter.scale.is_finite() || meter.scale == 0.0 {
                return Err(bad(key("scale"), "must be a finite, non-zero number".into()));
            }
        }
        Ok(())
    }

    /// The gateway's MAC (checked at load).
    pub fn mac(&self) -> Mac {
        Mac::parse(&self.mac).unwrap_or(Mac::from_bytes([0; 6]))
    }

    /// `path` as given if absolute, otherwise under `data_dir`.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_absolute() { path.to_owned() } else { self.data_dir.join(path) }
    }

    pub fn poll_interval(&self) -> Duration {
        Duration::from_secs(self.poll_seconds)
    }

    /// The bus named `name`.
    pub fn bus(&self, name: &str) -> Option<&BusConfig> {
        self.buses.iter().find(|b| b.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
mac = "AA-BB-CC-DD-EE-FF"
poll_seconds = 60
data_dir = "/var/lib/tds-agent"
[mqtt]
host = "tds.example.com"
port = 8883
ca_file = "ca.crt"
cert_file = "client.crt"
key_file = "/etc/tds/client.key"
[[bus]]
name = "rs485"
kind = "rtu"
device = "/dev/ttyUSB0"
baud = 9600
[[meter]]
code = "D01"
bus = "rs485"
slave = 1
register = 100
function = "holding"
type = "u32"
word_order = "big"
scale = 0.01
unit = "kWh"
"#;

    #[test]
    fn the_spec_example_parses_and_paths_resolve_under_data_dir() {
        let c = Config::parse(GOOD, Path::new("agent.toml")).unwrap();
        assert_eq!(c.mac().to_string(), "aa:bb:cc:dd:ee:ff");
        assert_eq!(c.resolve(&c.mqtt.ca_file), PathBuf::from("/var/lib/tds-agent/ca.crt"));
        assert_eq!(c.resolve(&c.mqtt.key_file), PathBuf::from("/etc/tds/client.key"));
        assert_eq!(c.meters[0].value_type, ValueType::U32);
    }

    #[test]
    fn the_shipped_example_configuration_is_valid() {
        let text = include_str!("../../../deploy/agent.example.toml");
        let c = Config::parse(text, Path::new("agent.example.toml")).unwrap();
        assert_eq!(c.meters.len(), 1);
    }

    #[test]
    fn an_unknown_key_is_named_in_the_error() {
        let text = GOOD.replace("baud = 9600", "baudrate = 9600");
        let e = Config::parse(&text, Path::new("agent.toml")).unwrap_err().to_string();
        assert!(e.contains("baudrate"), "{e}");
        assert!(e.contains("agent.toml"), "{e}");
    }

    #[test]
    fn a_meter_on_an_unknown_bus_is_named() {
        let text = GOOD.replace("bus = \"rs485\"", "bus = \"rs232\"");
        let e = Config::parse(&text, Path::new("a.toml")).unwrap_err().to_string();
        assert!(e.contains("meter[0].bus") && e.contains("rs232"), "{e}");
    }

    #[test]
    fn a_bad_type_and_a_bad_mac_are_named() {
        let e =
            Config::parse(&GOOD.replace("\"u32\"", "\"u24\""), Path::new("a.toml")).unwrap_err().to_string();
        assert!(e.contains("u24"), "{e}");
        let e = Config::parse(&GOOD.replace("AA-BB-CC-DD-EE-FF", "nope"), Path::new("a.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("mac"), "{e}");
    }
}
