//! The TDS server and administration CLI. `main.rs` only parses arguments and calls [`run`];
//! end-to-end tests call the same functions. This crate wires the library crates together:
//! configuration, logging, listeners and shutdown live here and nowhere else.

pub mod admin;
pub mod backup;
pub mod bench;
pub mod broker;
pub mod cli;
pub mod config;
pub mod consumption;
pub mod demo;
pub mod import;
pub mod jobs;
pub mod live;
pub mod logging;
pub mod pki;
pub mod renewal;
pub mod reports;
pub mod serve;
pub mod simulate;

use anyhow::Context;
use cli::{Cli, Command, ConfigCommand};
use config::Config;
use tds_store::Store;

/// Runs one command.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Config { command: ConfigCommand::Example } = &cli.command {
        print!("{}", config::EXAMPLE);
        return Ok(());
    }
    let config = Config::load(cli.config.as_deref())?;
    logging::init(&config);
    match cli.command {
        Command::Config { command: ConfigCommand::Example } => Ok(()),
        Command::Config { command: ConfigCommand::Check } => {
            println!("# configuration is valid; in force:\n{}", config.to_redacted_toml()?);
            Ok(())
        }
        Command::Serve => serve::serve(&config, serve::shutdown_signal()).await,
        Command::Migrate => {
            let store = open_store(&config).await?;
            println!("schema of {} is up to date", tds_store::redact_url(&config.database_url()));
            store.db().close().await;
            Ok(())
        }
        Command::Tenant { command } => admin::tenant(&open_store(&config).await?, command).await,
        Command::User { command } => admin::user(&open_store(&config).await?, command).await,
        Command::Gateway { command } => {
            import::gateway(&open_store(&config).await?, command, config.import_limits()?).await
        }
        Command::Device { command } => {
            import::device(&open_store(&config).await?, command, config.import_limits()?).await
        }
        Command::Simulate(args) => simulate::run(&config, args).await,
        Command::Demo(args) => demo::run(&config, args, serve::shutdown_signal()).await,
        Command::Consumption(args) => consumption::run(&open_store(&config).await?, args).await,
        Command::Report(args) => reports::report(&open_store(&config).await?, args).await,
        Command::Readings { command: cli::ReadingsCommand::Export(args) } => {
            // The export reads one page at a time: one connection. More would take turns and
            // each fill its own page cache (64 MiB on SQLite), so the process would grow with
            // the rows until every connection's cache is full.
            let config = Config { db_max_connections: 1, ..config.clone() };
            reports::export(&open_store(&config).await?, args).await
        }
        Command::Bench { command } => bench::run(&config, command).await,
        Command::Token { command } => admin::token(&open_store(&config).await?, command).await,
        Command::Backup { file, force } => backup::backup(&config, &file, force).await,
        Command::Restore { file, force } => backup::restore(&config, &file, force).await,
        Command::Db { command: cli::DbCommand::Copy { from, to } } => {
            backup::db_copy(&config, &from, &to).await
        }
        Command::Ca { command } => pki::ca(&config, command),
        Command::Cert { command } => pki::cert(&config, &open_store(&config).await?, command).await,
        Command::BrokerConfig { out, bind, port } => {
            pki::broker_config(&config, &open_store(&config).await?, &out, &bind, port).await
        }
    }
}

/// Opens the configured database and brings its schema up to date.
pub async fn open_store(config: &Config) -> anyhow::Result<Store> {
    let url = config.database_url();
    Store::open(&url, &config.db_options())
        .await
        .with_context(|| format!("cannot use database {}", tds_store::redact_url(&url)))
}
