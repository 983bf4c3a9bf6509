//! The `tds` binary: parses the command line, installs logging, runs, and turns an error into a
//! message and exit status 1.

use clap::Parser;
use std::process::ExitCode;

/// mimalloc instead of the C library's allocator: the endpoint allocates and frees a message's
/// JSON, its readings and each commit's buffers from many threads, and glibc's malloc, free and
/// their consolidation were ~30 % of the server's CPU at 10,000 meters (`perf` during `tds bench
/// ingest --gateways 1000 --devices 10`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = tds::cli::Cli::parse();
    // Everything TDS creates (the SQLite files, keys, the outbox, backups) is its owner's only
    // (SPEC §11), whatever umask the shell or service manager handed down.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    // Every connected gateway is a socket: lift the soft limit on open files to the hard one
    // (often 1024 soft against 500k+ hard), so that thousands of gateways fit.
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        eprintln!("warning: cannot raise the open-file limit: {e}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(tds::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
