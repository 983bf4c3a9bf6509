//! `tds bench ingest --compare mosquitto`: the same load generator, gateways and certificates,
//! in the same run, against Debian's Mosquitto first (mutual TLS, `QoS` 1, no persistence, no
//! subscriber: what the transport alone costs), then against TDS (durable). Mosquitto gets the
//! TDS endpoint's own server certificate and CA, so both handshakes are the same.

use super::load::{Figures, Gateway, Run, load};
use anyhow::{Context, bail};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tds_pki::CaFiles;
use tokio::runtime::Handle;
use tokio::time::Instant;

/// Mosquitto's figures at full load and at half the load it sustained.
pub(super) struct BrokerFigures {
    pub full: Figures,
    pub half: Figures,
}

/// Starts Mosquitto on a free port of 127.0.0.1 with `ca`'s server certificate, runs `gateways`
/// against it at full load then at half that, and stops it.
pub(super) async fn mosquitto(
    on: &Handle,
    gateways: Vec<Gateway>,
    run: Run,
    ca: &CaFiles,
    dir: &Path,
) -> anyhow::Result<(Vec<Gateway>, BrokerFigures)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let conf = dir.join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "user root\npersistence false\nlog_dest none\nlistener {port} 127.0.0.1\ncafile {}\ncertfile {}\n\
             keyfile {}\nrequire_certificate true\nuse_identity_as_username true\nmax_queued_messages 100000\n",
            ca.ca_cert_path().display(),
            ca.server_cert_path().display(),
            ca.server_key_path().display()
        ),
    )?;
    let child = Command::new("mosquitto")
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start mosquitto (Debian's package mosquitto)")?;
    let mut broker = Broker(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        if let Ok(Some(status)) = broker.0.try_wait() {
            bail!("mosquitto stopped at start ({status})");
        }
        if Instant::now() > deadline {
            bail!("mosquitto did not listen on port {port} within 10 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let run = Run { port, broker_pid: Some(broker.0.id()), postgres_cpu: false, ..run };
    let (gateways, full) = load(on, gateways, Run { rate: None, ..run }, None).await?;
    super::ingest::report("Mosquitto, full load", &full);
    let half = full.messages_per_s / 2.0;
    let (gateways, half_figures) = load(on, gateways, Run { rate: Some(half), ..run }, None).await?;
    super::ingest::report(&format!("Mosquitto, half load ({half:.0} msg/s offered)"), &half_figures);
    broker.stop();
    Ok((gateways, BrokerFigures { full, half: half_figures }))
}

/// Mosquitto, killed when dropped (a failed run must not leave it behind).
struct Broker(Child);

impl Broker {
    fn stop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The side-by-side table: TDS's full and half-load figures against Mosquitto's.
pub(super) fn table(broker: &BrokerFigures, full: &Figures, half: &Figures, backend: &str) {
    let ratio = |a: f64, b: f64| if b > 0.0 { format!("{:.2}", a / b) } else { "-".into() };
    let cpu_per_message = |f: &Figures, tds: bool| -> Option<f64> {
        let c = f.cpu.as_ref()?;
        let used = if tds { c.server + c.postgres.unwrap_or(0.0) } else { c.broker? };
        let messages = f.messages_per_s * f.run_for.as_secs_f64();
        Some(used * 1e6 / messages.max(1.0))
    };
    println!("side by side, same load generator and gateways:");
    println!(
        "{:<34} {:>22} {:>22} {:>16}",
        "",
        "Mosquitto (no persist.)",
        format!("TDS ({backend}, durable)"),
        "TDS / Mosquitto"
    );
    let (b, t) = (&broker.full, full);
    println!(
        "{:<34} {:>22.0} {:>22.0} {:>16}",
        "full load: messages/s",
        b.messages_per_s,
        t.messages_per_s,
        ratio(t.messages_per_s, b.messages_per_s)
    );
    println!(
        "{:<34} {:>22.0} {:>22.0} {:>16}",
        "full load: readings/s",
        b.readings_per_s,
        t.readings_per_s,
        ratio(t.readings_per_s, b.readings_per_s)
    );
    let (bh, th) = (&broker.half, half);
    for (label, x, y) in [
        ("full load: PUBACK p50 ms", b.p50_ms, t.p50_ms),
        ("full load: PUBACK p99 ms", b.p99_ms, t.p99_ms),
        ("half load: PUBACK p50 ms", bh.p50_ms, th.p50_ms),
        ("half load: PUBACK p99 ms", bh.p99_ms, th.p99_ms),
    ] {
        println!("{label:<34} {x:>22.1} {y:>22.1} {:>16}", ratio(y, x));
    }
    if let (Some(x), Some(y)) = (cpu_per_message(b, false), cpu_per_message(t, true)) {
        println!("{:<34} {x:>22.1} {y:>22.1} {:>16}", "full load: server CPU µs/message", ratio(y, x));
    }
}
