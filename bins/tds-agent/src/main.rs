//! `tds-agent`: the gateway agent for Linux gateways (SPEC §10). Wiring only: the command line,
//! tracing, signals and exit codes; the work is in `tds-gateway`.

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use tds_gateway::config::Config;
use tds_gateway::status::Status;

mod bench;

#[derive(Debug, Parser)]
#[command(
    name = "tds-agent",
    version,
    about = "Reads Modbus meters and reports them to TDS over MQTT with mutual TLS."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Poll the meters and report to TDS until stopped (SIGTERM or Ctrl-C).
    Run {
        #[arg(long, env = "TDS_AGENT_CONFIG")]
        config: PathBuf,
    },
    /// Check the configuration file and say what is wrong with which key.
    Check {
        #[arg(long, env = "TDS_AGENT_CONFIG")]
        config: PathBuf,
    },
    /// Read every configured register once and print it (for installers).
    Scan {
        #[arg(long, env = "TDS_AGENT_CONFIG")]
        config: PathBuf,
    },
    /// Show queue depth, last PUBACK, certificate expiry and meter failures.
    Status {
        #[arg(long, env = "TDS_AGENT_CONFIG")]
        config: PathBuf,
        /// Print the status as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Measurements for the README (a Modbus TCP simulator of N meters and a local run).
    #[command(hide = true)]
    Bench(bench::Args),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TDS_AGENT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match dispatch(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tds-agent: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    // Two workers: a Raspberry Pi has four cores and other work to do.
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("tokio runtime")
}

fn dispatch(command: Command) -> anyhow::Result<std::process::ExitCode> {
    match command {
        Command::Check { config } => {
            let c = Config::load(&config)?;
            println!(
                "{}: OK (gateway {}, {} bus(es), {} meter(s), every {} s)",
                config.display(),
                c.mac(),
                c.buses.len(),
                c.meters.len(),
                c.poll_seconds
            );
            for path in [&c.mqtt.ca_file, &c.mqtt.cert_file, &c.mqtt.key_file] {
                let p = c.resolve(path);
                if !p.exists() {
                    println!("warning: {} does not exist (yet)", p.display());
                }
            }
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Scan { config } => {
            let c = Config::load(&config)?;
            let outcomes = runtime()?.block_on(tds_gateway::agent::scan(&c));
            let mut failed = false;
            for (meter, at, result) in outcomes {
                let unit = meter.unit.as_deref().unwrap_or("");
                match result {
                    Ok(v) => println!(
                        "{:<12} bus {:<10} slave {:>3} reg {:>5} {:?} {:?}: {v} {unit}  ({})",
                        meter.code,
                        meter.bus,
                        meter.slave,
                        meter.register,
                        meter.function,
                        meter.value_type,
                        at.format("%H:%M:%S%.3f")
                    ),
                    Err(e) => {
                        failed = true;
                        println!(
                            "{:<12} bus {:<10} slave {:>3} reg {:>5}: FAILED: {e}",
                            meter.code, meter.bus, meter.slave, meter.register
                        );
                    }
                }
            }
            Ok(if failed { std::process::ExitCode::from(2) } else { std::process::ExitCode::SUCCESS })
        }
        Command::Status { config, json } => status(&config, json),
        Command::Run { config } => {
            let c = Config::load(&config)?;
            runtime()?.block_on(async move {
                let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
                tokio::spawn(async move {
                    shutdown_signal().await;
                    tracing::info!("stopping: saying offline and leaving the queue on disk");
                    let _ = stop_tx.send(true);
                });
                tracing::info!(mac = %c.mac(), meters = c.meters.len(), "tds-agent starting");
                tds_gateway::agent::run(c, stop_rx).await
            })?;
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Bench(args) => bench::run(args).map(|()| std::process::ExitCode::SUCCESS),
    }
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
    }
}

fn status(config: &Path, json: bool) -> anyhow::Result<std::process::ExitCode> {
    let c = Config::load(config)?;
    let mut s = Status::load(&c.data_dir).unwrap_or_default();
    // The queue and the certificate as they are on disk now, whether the agent runs or not.
    if let Ok(q) = tds_gateway::queue::DiskQueue::open(&tds_gateway::agent::queue_dir(&c), u64::MAX) {
        s.queue_batches = q.len();
        s.queue_bytes = q.bytes();
    }
    if let Ok(pem) = std::fs::read_to_string(c.resolve(&c.mqtt.cert_file))
        && let Ok(info) = tds_gateway::cert::info(&pem)
    {
        s.cert_serial = Some(info.serial);
        s.cert_not_after = Some(info.not_after);
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(std::process::ExitCode::SUCCESS);
    }
    let when =
        |t: Option<chrono::DateTime<chrono::Utc>>| t.map_or_else(|| "never".to_owned(), |t| t.to_rfc3339());
    println!("gateway        {}", c.mac());
    println!("status file    {}", when(s.updated_at));
    println!(
        "connected      {}",
        if s.connected { format!("yes, since {}", when(s.connected_since)) } else { "no".into() }
    );
    if let Some(e) = &s.last_connect_error {
        println!("last error     {e}");
    }
    println!(
        "queue          {} batch(es), {} bytes; {} dropped when full",
        s.queue_batches, s.queue_bytes, s.dropped_batches
    );
    println!("last PUBACK    {}", when(s.last_puback));
    match s.cert_not_after {
        Some(t) => {
            let days = (t - chrono::Utc::now()).num_days();
            println!(
                "certificate    serial {} expires {} ({days} days)",
                s.cert_serial.as_deref().unwrap_or("?"),
                t.to_rfc3339()
            );
        }
        None => println!("certificate    not readable at {}", c.resolve(&c.mqtt.cert_file).display()),
    }
    if let Some(u) = &s.last_cert_update {
        println!("cert_update    {u}");
    }
    for m in &s.meters {
        let state = if m.consecutive_failures == 0 {
            format!(
                "ok, last {} at {}",
                m.last_value.map_or("-".into(), |v| v.to_string()),
                when(m.last_read_at)
            )
        } else {
            format!(
                "{} failure(s) in a row: {}",
                m.consecutive_failures,
                m.last_error.as_deref().unwrap_or("?")
            )
        };
        println!("meter {:<8} {state}", m.code);
    }
    Ok(std::process::ExitCode::SUCCESS)
}
