//! Modbus RTU over a pseudo-terminal pair made by socat: tokio-modbus's RTU server on one end,
//! the agent's bus (tokio-serial) on the other.

use crate::support::{Behaviour, Meters};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tds_gateway::config::{Config, Function, ValueType, WordOrder};

struct Socat(std::process::Child);

impl Drop for Socat {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn meters_are_read_over_rtu_on_a_pseudo_terminal_pair() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("server"), dir.path().join("agent"));
    let child = Command::new("socat")
        .args([
            format!("pty,raw,echo=0,link={}", a.display()),
            format!("pty,raw,echo=0,link={}", b.display()),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("socat (Debian package socat; scripts/test.sh installs it)");
    let _socat = Socat(child);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !(a.exists() && b.exists()) {
        assert!(Instant::now() < deadline, "socat made no pseudo-terminals");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut regs = Behaviour::default();
    regs.set(Function::Holding, 1, 100, 123_456.0, ValueType::U32, WordOrder::Little);
    regs.set(Function::Input, 1, 200, -42.25, ValueType::F32, WordOrder::Big);
    regs.silent.insert(9);
    let server = tokio_modbus::server::rtu::Server::new_from_path(&a, 9600).unwrap();
    tokio::spawn(server.serve_forever(Meters(Arc::new(Mutex::new(regs)))));

    let text = format!(
        r#"mac = "02:00:00:00:00:02"
data_dir = "/tmp/unused"
[mqtt]
host = "localhost"
ca_file = "ca.crt"
cert_file = "client.crt"
key_file = "client.key"
[[bus]]
name = "rs485"
kind = "rtu"
device = "{}"
baud = 9600
parity = "none"
stop_bits = 1
timeout_ms = 300
retries = 0
[[meter]]
code = "E1"
bus = "rs485"
slave = 1
register = 100
type = "u32"
word_order = "little"
scale = 0.01
unit = "kWh"
[[meter]]
code = "OFF"
bus = "rs485"
slave = 9
register = 100
type = "u16"
[[meter]]
code = "T1"
bus = "rs485"
slave = 1
register = 200
function = "input"
type = "f32"
unit = "°C"
"#,
        b.display()
    );
    let config = Config::parse(&text, Path::new("rtu.toml")).unwrap();
    let got = tds_gateway::agent::scan(&config).await;
    let value = |c: &str| got.iter().find(|(m, _, _)| m.code == c).map(|(_, _, r)| r.clone()).unwrap();
    assert_eq!(value("E1").unwrap(), 123_456.0 * 0.01);
    assert!(value("OFF").is_err(), "the meter that is off times out");
    assert_eq!(value("T1").unwrap(), -42.25, "the meter after the silent one is read");
}
