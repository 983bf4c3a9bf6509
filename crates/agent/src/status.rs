//! The agent's status file (`data_dir/status.json`): what `tds-agent status` shows while the
//! agent runs or after it stopped — connection, queue, last PUBACK, certificate, each meter's
//! consecutive failures. Written atomically (temp file + rename) so a reader never sees half.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const FILE_NAME: &str = "status.json";

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct MeterStatus {
    pub code: String,
    pub consecutive_failures: u64,
    pub total_failures: u64,
    pub last_error: Option<String>,
    pub last_value: Option<f64>,
    pub last_read_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Status {
    pub mac: String,
    pub pid: u32,
    pub updated_at: Option<DateTime<Utc>>,
    pub connected: bool,
    pub connected_since: Option<DateTime<Utc>>,
    pub last_connect_error: Option<String>,
    pub queue_batches: usize,
    pub queue_bytes: u64,
    pub dropped_batches: u64,
    pub batches_acknowledged: u64,
    pub last_puback: Option<DateTime<Utc>>,
    pub cert_serial: Option<String>,
    pub cert_not_after: Option<DateTime<Utc>>,
    pub last_cert_update: Option<String>,
    pub meters: Vec<MeterStatus>,
}

pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE_NAME)
}

impl Status {
    pub fn load(data_dir: &Path) -> std::io::Result<Self> {
        let bytes = std::fs::read(path(data_dir))?;
        serde_json::from_slice(&bytes).map_err(std::io::Error::other)
    }

    pub fn save(&self, data_dir: &Path) -> std::io::Result<()> {
        let final_path = path(data_dir);
        let tmp = data_dir.join(format!("{FILE_NAME}.tmp"));
        std::fs::write(&tmp, serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?)?;
        std::fs::rename(tmp, final_path)
    }
}
