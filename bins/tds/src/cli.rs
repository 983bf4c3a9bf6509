//! The command line, as SPEC §9 lists it. Commands of later capabilities are added with them.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(name = "tds", version, about = "TDS: remote monitoring of water, energy and gas consumption")]
pub struct Cli {
    /// Configuration file (TOML). Settings may also come from TDS_* environment variables.
    #[arg(long, global = true, env = "TDS_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server: web UI, API, health checks (migrates the database on start).
    Serve,
    /// Create or upgrade the database schema.
    Migrate,
    /// Print the commented example configuration, or validate the configuration in force.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Tenants.
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
    },
    /// Users.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Gateways.
    Gateway {
        #[command(subcommand)]
        command: GatewayCommand,
    },
    /// Devices.
    Device {
        #[command(subcommand)]
        command: DeviceCommand,
    },
    /// Benchmarks that print figures.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print every setting, commented.
    Example,
    /// Validate the configuration (file given with --config, and TDS_* variables).
    Check,
}

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant.
    Create {
        #[arg(long)]
        name: String,
        /// CNPJ, with or without punctuation (numeric or the 2026 alphanumeric format).
        #[arg(long)]
        cnpj: Option<String>,
        /// IANA time zone.
        #[arg(long, default_value = "America/Sao_Paulo")]
        timezone: String,
    },
    /// List tenants.
    List,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user and make them a member of a tenant. The password is read from standard input.
    Create {
        #[arg(long)]
        email: String,
        /// Tenant name.
        #[arg(long)]
        tenant: String,
        /// admin, editor or viewer.
        #[arg(long)]
        role: String,
        /// Display name (default: the part of the email before @).
        #[arg(long)]
        name: Option<String>,
        /// Platform staff (may administer all tenants).
        #[arg(long)]
        staff: bool,
        /// pt-BR or en.
        #[arg(long, default_value = "pt-BR")]
        language: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum GatewayCommand {
    /// Pre-register gateways from a CSV `mac,code,name[,model,serial_number,device_id]`.
    Import(ImportArgs),
}

#[derive(Debug, Subcommand)]
pub enum DeviceCommand {
    /// Add devices from a CSV `gateway_mac,code,name,type,medium,kind,unit[,slave_id,register]`.
    Import(ImportArgs),
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Tenant name.
    #[arg(long)]
    pub tenant: String,
    /// The CSV file (a header row is optional).
    pub file: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Load readings through the real store code and print rows per second.
    Store {
        /// Database to load (default: a new SQLite file in a temporary directory).
        #[arg(long)]
        database_url: Option<String>,
        /// Readings to insert in all.
        #[arg(long, default_value_t = 1_000_000)]
        readings: usize,
        /// Devices the readings are spread over.
        #[arg(long, default_value_t = 100)]
        devices: usize,
        /// Readings per transaction.
        #[arg(long, default_value_t = 10_000)]
        batch: usize,
    },
}
