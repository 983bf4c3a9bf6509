//! `tds-agent bench …` (hidden): the pieces `scripts/bench-agent.sh` measures the agent with —
//! a Modbus TCP simulator of many meters (a separate process, so that the agent's own memory
//! and CPU are what is measured) and a queue filler that puts a day's backlog on disk.

use anyhow::Context;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use tds_gateway::config::Config;
use tokio_modbus::prelude::{ExceptionCode, Request, Response, SlaveRequest};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(Debug, clap::Subcommand)]
enum What {
    /// Serve `meters` counters (slaves 1..=meters, u32 at holding register 0) over Modbus TCP.
    ModbusSim {
        #[arg(long, default_value_t = 32)]
        meters: u8,
        #[arg(long, default_value = "127.0.0.1:5020")]
        listen: String,
    },
    /// Queue `batches` batches of every configured meter, one `step` seconds apart (a backlog).
    FillQueue {
        #[arg(long)]
        config: std::path::PathBuf,
        #[arg(long, default_value_t = 8640)]
        batches: u32,
        #[arg(long, default_value_t = 10)]
        step: i64,
    },
}

#[derive(Debug, Clone)]
struct Counters(Arc<AtomicU32>);

type Answer = Pin<Box<dyn Future<Output = Result<Response, ExceptionCode>> + Send>>;

impl tokio_modbus::server::Service for Counters {
    type Request = SlaveRequest<'static>;
    type Response = Response;
    type Exception = ExceptionCode;
    type Future = Answer;

    fn call(&self, req: Self::Request) -> Self::Future {
        // Every read moves the counter on: a meter that is counting.
        let v = self.0.fetch_add(1, Ordering::Relaxed).wrapping_add(u32::from(req.slave) * 1_000_000);
        let words = vec![(v >> 16) as u16, v as u16];
        let answer = match req.request {
            Request::ReadHoldingRegisters(_, 2) => Ok(Response::ReadHoldingRegisters(words)),
            Request::ReadInputRegisters(_, 2) => Ok(Response::ReadInputRegisters(words)),
            _ => Err(ExceptionCode::IllegalDataAddress),
        };
        Box::pin(std::future::ready(answer))
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    match args.what {
        What::ModbusSim { meters, listen } => rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind(&listen).await.with_context(|| listen.clone())?;
            eprintln!("serving {meters} meters on {listen}");
            let service = Counters(Arc::new(AtomicU32::new(0)));
            let server = tokio_modbus::server::tcp::Server::new(listener);
            let on_connected = move |stream, _addr| {
                let s = service.clone();
                async move { Ok(Some((s, stream))) }
            };
            server.serve(&on_connected, |_e| {}).await?;
            Ok(())
        }),
        What::FillQueue { config, batches, step } => {
            let c = Config::load(&config)?;
            let mut q =
                tds_gateway::queue::DiskQueue::open(&tds_gateway::agent::queue_dir(&c), c.queue.max_bytes)?;
            let start = chrono::Utc::now() - chrono::Duration::seconds(step * i64::from(batches));
            let started = std::time::Instant::now();
            for n in 0..batches {
                let at = start + chrono::Duration::seconds(step * i64::from(n));
                let readings: Vec<_> = c
                    .meters
                    .iter()
                    .enumerate()
                    .map(|(i, m)| tds_gateway::batch::Reading {
                        code: m.code.clone(),
                        value: f64::from(n) * 0.5 + i as f64,
                        unit: m.unit.clone(),
                        at,
                    })
                    .collect();
                q.push(&tds_gateway::batch::encode(c.mac(), at, &readings))?;
            }
            println!(
                "queued {batches} batches ({} bytes) in {:.1} s; {} dropped",
                q.bytes(),
                started.elapsed().as_secs_f64(),
                q.dropped()
            );
            Ok(())
        }
    }
}
