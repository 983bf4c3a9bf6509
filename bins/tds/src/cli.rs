//! The command line, as SPEC §9 lists it. Commands of later capabilities are added with them.

// Doc comments here are clap's help text for operators, where Markdown backticks would show.
#![allow(clippy::doc_markdown)]

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
    /// The platform certificate authority.
    Ca {
        #[command(subcommand)]
        command: CaCommand,
    },
    /// Device certificates.
    Cert {
        #[command(subcommand)]
        command: CertCommand,
    },
    /// Write Mosquitto's configuration, ACL, certificates and CRL for scale-out mode.
    BrokerConfig {
        /// Directory to write into (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// Address Mosquitto listens on.
        #[arg(long, default_value = "0.0.0.0")]
        bind: String,
        /// Port Mosquitto listens on.
        #[arg(long, default_value_t = 8883)]
        port: u16,
    },
    /// Run virtual gateways with realistic meters against the device endpoint over mutual TLS.
    Simulate(SimulateArgs),
    /// Serve, plus a demo tenant with an admin and a viewer, gateways, meters, a week of history
    /// and simulated gateways reporting live.
    Demo(DemoArgs),
    /// Consumption per hour, day or month of the tenant's time zone, as CSV or XLSX.
    Consumption(ConsumptionArgs),
    /// A consumption report (PDF, XLSX or CSV) of a device or several, a gateway, a medium or the
    /// whole tenant, with completeness, comparisons and the month-end projection.
    Report(ReportArgs),
    /// Raw readings.
    Readings {
        #[command(subcommand)]
        command: ReadingsCommand,
    },
    /// Write a consistent backup (database snapshot, PKI directory, manifest) into one file, while
    /// the server keeps running.
    Backup {
        /// The backup file to write (a ZIP archive).
        file: PathBuf,
        /// Overwrite FILE when it exists.
        #[arg(long)]
        force: bool,
    },
    /// Restore a backup into the configured database and data directory, which must be empty
    /// (or --force). Stop the servers first.
    Restore {
        /// A file written by `tds backup`.
        file: PathBuf,
        /// Replace an existing installation (its database rows and PKI files are lost).
        #[arg(long)]
        force: bool,
    },
    /// API tokens for integrators (SPEC §7).
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Copy a whole installation between databases (SQLite up to PostgreSQL).
    Db {
        #[command(subcommand)]
        command: DbCommand,
    },
    /// Benchmarks that print figures.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token and print its secret (shown this once only).
    Create {
        /// Tenant name (a tenant's token).
        #[arg(long, required_unless_present = "staff", conflicts_with = "staff")]
        tenant: Option<String>,
        /// A staff token instead: platform operations (tenants) through /api/v1/staff, no tenant.
        #[arg(long)]
        staff: bool,
        /// A name unique in the tenant (or among staff tokens), e.g. the integration's ("erp").
        #[arg(long)]
        name: String,
        /// viewer (read), editor (also write) or admin (also certificates and settings).
        #[arg(long, required_unless_present = "staff", conflicts_with = "staff")]
        role: Option<String>,
        /// Last day the token works (YYYY-MM-DD, in the tenant's time zone; UTC for a staff
        /// token); default: no expiry.
        #[arg(long)]
        expires: Option<String>,
    },
    /// List tokens (of one tenant, or of all, staff tokens included).
    List {
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Revoke a token at once.
    Revoke {
        #[arg(long, required_unless_present = "staff", conflicts_with = "staff")]
        tenant: Option<String>,
        /// A staff token.
        #[arg(long)]
        staff: bool,
        #[arg(long)]
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Copy every table from one database into a new, empty one, in one snapshot of the source,
    /// all or nothing, with the counts verified. Stop the servers first, then point TDS at the copy.
    Copy {
        /// Source database URL, e.g. sqlite://./data/tds.db
        #[arg(long)]
        from: String,
        /// Target database URL, e.g. postgres://tds:PASSWORD@localhost/tds (created schema, no rows).
        #[arg(long)]
        to: String,
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
    /// Pre-register gateways from a CSV `mac,code,name[,model,serial_number,device_id]`, or from
    /// the manifest.csv of `tds cert batch` (header `mac,serial_number,cert_serial,expires_at`).
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
pub enum CaCommand {
    /// Create the platform CA and the MQTT server certificate in {data_dir}/pki (refuses to
    /// overwrite an existing CA). With ca_passphrase set (TDS_CA_PASSPHRASE), the key is encrypted.
    Init {
        /// rsa4096 or ecdsa-p384.
        #[arg(long, default_value = "rsa4096")]
        algorithm: String,
        /// Subject common name (default "TDS Platform CA").
        #[arg(long)]
        common_name: Option<String>,
        /// Subject organization (default "TDS").
        #[arg(long)]
        organization: Option<String>,
        /// More names for the MQTT server certificate, besides mqtt_public_host (repeatable).
        #[arg(long)]
        san: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum CertCommand {
    /// Issue a device certificate for a registered gateway and write its bundle MAC.zip
    /// (ca.crt, client.crt, client.key, README with the ESP32 NVS steps).
    Issue {
        #[arg(long)]
        mac: String,
        /// Directory the bundle is written to.
        #[arg(long)]
        out: PathBuf,
        /// rsa2048 (ESP32 mbedTLS) or ecdsa-p256.
        #[arg(long, default_value = "rsa2048")]
        key: String,
        /// Supersede the gateway's active certificate.
        #[arg(long)]
        replace: bool,
    },
    /// Factory batch: a CSV `mac,serial_number,model,device_id` gives one bundle per row and
    /// manifest.csv (`mac,serial_number,cert_serial,expires_at`).
    Batch {
        file: PathBuf,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value = "rsa2048")]
        key: String,
    },
    /// Sign a gateway's CSR (its key never leaves the device); prints the certificate or writes --out.
    SignCsr {
        #[arg(long)]
        mac: String,
        file: PathBuf,
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long)]
        replace: bool,
    },
    /// Revoke a gateway's active certificate (RFC 5280 reason: key_compromise, superseded,
    /// cessation_of_operation, affiliation_changed, unspecified, …) and re-issue the CRL.
    Revoke {
        #[arg(long)]
        mac: String,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        notes: Option<String>,
    },
    /// Start one certificate renewal of a gateway now, outside the daily budget: the offer waits
    /// retained on its cert_update topic until it connects with the new certificate.
    Renew {
        #[arg(long)]
        mac: String,
        /// CSR mode (the gateway makes its key); default: the gateway's mode.
        #[arg(long)]
        csr: bool,
    },
    /// Pause or resume the renewal campaign of a tenant, or show where it stands.
    Campaign {
        #[arg(long)]
        tenant: String,
        /// pause, resume or status.
        action: String,
    },
    /// List certificates (all tenants, or one).
    List {
        #[arg(long)]
        tenant: Option<String>,
        /// active, superseded, revoked or expired.
        #[arg(long)]
        status: Option<String>,
    },
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
    /// Run the MQTT device endpoint in this process and load it with simulated gateways over
    /// mutual TLS publishing QoS 1 batches; print messages/s, readings/s and publish→PUBACK
    /// latency at full load, then at half the measured load (or at --rate).
    Ingest(IngestBenchArgs),
    /// Turn --messages telemetry messages of one gateway with --devices meters (the load
    /// generator's messages) into the readings the device endpoint's writer stores, in this
    /// thread, without MQTT or the database: parsing, checks, device matching. Prints messages/s
    /// and the time per reading; under `valgrind --tool=callgrind`, two runs of different sizes
    /// give the instructions per message.
    Parse {
        #[arg(long, default_value_t = 200_000)]
        messages: u64,
        #[arg(long, default_value_t = 10)]
        devices: usize,
    },
    /// Build an embedded (SQLite) installation with --readings readings and their rollups, then
    /// `tds db copy` it into --to (an empty PostgreSQL database) and print rows per second.
    Copy {
        /// Target database URL (empty; the schema is created).
        #[arg(long)]
        to: String,
        #[arg(long, default_value_t = 1_000_000)]
        readings: usize,
        #[arg(long, default_value_t = 100)]
        devices: usize,
    },
    /// Seed the configured database for the API benchmark (`scripts/bench.sh api`): a tenant,
    /// a gateway of --devices meters with a reading every 15 minutes for --days days up to
    /// 2026-11-30, its rollups, and an admin token; prints shell assignments (TOKEN, MAC, FROM, TO).
    ApiData {
        #[arg(long, default_value_t = 32)]
        devices: usize,
        #[arg(long, default_value_t = 30)]
        days: i64,
    },
    /// Load a big data set (default 10k devices x one year, about 100 M readings) through the
    /// ingest path, bring the rollups up to date, and print p50/p95/p99 latency of the telemetry
    /// page's and the home page's queries.
    Queries(QueryBenchArgs),
    /// Seed a tenant of --devices meters with a month of readings and print the time to build its
    /// monthly consumption report and render it as PDF and XLSX.
    Report {
        /// Database to load (default: a new SQLite file in a temporary directory).
        #[arg(long)]
        database_url: Option<String>,
        #[arg(long, default_value_t = 1000)]
        devices: usize,
        /// Minutes between two readings of a device.
        #[arg(long, default_value_t = 60)]
        interval_minutes: i64,
    },
    /// A tenant of --devices meters, each with a daily and a monthly threshold rule, plus
    /// tenant-wide no-data, gateway-offline and water night-flow rules, with today's readings
    /// and rollups; prints the time of a whole evaluation round and of the evaluation after a
    /// rollup round that refreshed every device.
    /// A day of the certificate renewal campaign over --gateways simulated gateways whose
    /// certificates all expire within 730 days, with a budget of --budget a day: prints the time
    /// and the peak memory of the run that starts the day's renewals (server-key mode: a key and
    /// a certificate each), for RSA-2048 and for P-256 device keys.
    Renewal {
        /// Database to load (default: a new SQLite file in a temporary directory, one per key).
        #[arg(long)]
        database_url: Option<String>,
        #[arg(long, default_value_t = 10_000)]
        gateways: usize,
        #[arg(long, default_value_t = 2_000)]
        budget: i64,
        /// rsa2048, ecdsa-p256 or both.
        #[arg(long, default_value = "both")]
        key: String,
    },
    Alerts {
        /// Database to load (default: a new SQLite file in a temporary directory).
        #[arg(long)]
        database_url: Option<String>,
        #[arg(long, default_value_t = 10_000)]
        devices: usize,
        /// Rounds timed (the median is printed).
        #[arg(long, default_value_t = 5)]
        rounds: usize,
    },
}

#[derive(Debug, Args)]
pub struct IngestBenchArgs {
    /// Database to load (default: a new SQLite file in a temporary directory).
    #[arg(long)]
    pub database_url: Option<String>,
    /// Simulated gateways, one MQTT connection each.
    #[arg(long, default_value_t = 100)]
    pub gateways: usize,
    /// Devices per gateway (1 to 32): readings per message.
    #[arg(long, default_value_t = 10)]
    pub devices: usize,
    /// Length of each run, in seconds.
    #[arg(long, default_value_t = 20)]
    pub seconds: u64,
    /// Unacknowledged messages each gateway keeps in flight.
    #[arg(long, default_value_t = 10)]
    pub inflight: usize,
    /// Offered load in messages per second over all gateways, for a single run; by default a
    /// run at full load is followed by one at half the load it sustained.
    #[arg(long)]
    pub rate: Option<f64>,
    /// The endpoint's largest commit, in readings (default: the server's, 100000).
    #[arg(long)]
    pub commit_readings: Option<usize>,
    /// How long a commit waits for more messages after the first, in milliseconds (default: the
    /// server's, 0: it takes what is waiting).
    #[arg(long)]
    pub commit_delay_ms: Option<u64>,
    /// Messages waiting for the endpoint's writer before sessions stop reading (default: the
    /// server's, 16384); with `--commit-readings` past ten times it, commits cannot fill.
    #[arg(long)]
    pub queue_capacity: Option<usize>,
    /// Readings waiting for the endpoint's writer before sessions stop reading (default: the
    /// server's, 100000).
    #[arg(long)]
    pub queue_readings: Option<usize>,
    /// Keep rollups as `tds serve` does (the rollup worker runs beside the endpoint): `on`
    /// (default) or `off`, to measure what they cost.
    #[arg(long, default_value = "on")]
    pub rollups: String,
    /// Evaluate alert rules as `tds serve` does: every device gets a daily threshold rule, the
    /// rules of refreshed devices are evaluated after each rollup round and every rule every 5 s:
    /// `on` or `off` (default), to measure what evaluation costs ingestion. Needs rollups on.
    #[arg(long, default_value = "off")]
    pub alerts: String,
    /// After the full and half-load runs, offer twice the sustained load for this many seconds
    /// (0: not at all), then half the load again, and print the throughput kept, the server's
    /// peak memory and how soon the latency recovers.
    #[arg(long, default_value_t = 0)]
    pub overload: u64,
    /// Run the same gateways against another MQTT server first, at full and half load, and
    /// print both side by side: `mosquitto` (Debian's, mutual TLS, no persistence).
    #[arg(long)]
    pub compare: Option<String>,
    /// A reconnection storm in every run: this per cent of the gateways (1 to 100) have their
    /// connections cut halfway through it, all at once, and connect again at once; prints how
    /// long they took to be connected again (the PUBACK p99 per second shows what it cost the
    /// others).
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=100))]
    pub storm: Option<u8>,
}

#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Virtual gateways (created in the tenant on the first run, reused afterwards).
    #[arg(long, default_value_t = 10)]
    pub gateways: usize,
    /// Index of the first of them: `--first-gateway 20000 --gateways 10000` runs SIM-20001 to
    /// SIM-30000, so that several simulators (one per server instance) share no gateway.
    #[arg(long, default_value_t = 0)]
    pub first_gateway: usize,
    /// Meters per gateway (1..32): water, energy and gas registers, temperature, pressure, …
    #[arg(long, default_value_t = 4)]
    pub devices: usize,
    /// Seconds between two batches of one gateway.
    #[arg(long, default_value_t = 60)]
    pub interval: u64,
    /// Stop after this many seconds (default: until Ctrl-C).
    #[arg(long)]
    pub duration: Option<u64>,
    /// Tenant the gateways belong to (created when missing).
    #[arg(long, default_value = "Simulação")]
    pub tenant: String,
    /// Host name of the device endpoint (default: mqtt_public_host; must be in its certificate).
    #[arg(long)]
    pub mqtt_host: Option<String>,
    /// Port of the device endpoint (default: the port of mqtt_addr).
    #[arg(long)]
    pub mqtt_port: Option<u16>,
    /// Gateways connecting per second while the fleet starts.
    #[arg(long, default_value_t = 200.0)]
    pub connect_rate: f64,
    /// Unacknowledged messages a gateway keeps before waiting.
    #[arg(long, default_value_t = 10)]
    pub inflight: u16,
    /// Key of newly issued gateway certificates: ecdsa-p256 (fast) or rsa2048 (as ESP32 fleets).
    #[arg(long, default_value = "ecdsa-p256")]
    pub key: String,
    /// What goes wrong: `field` (a meter replaced now and then, an uplink gap about every 200
    /// messages flushed as a late batch, a bad message in 500), `none`, or `heavy` (for testing
    /// dead letters and late batches: a bad message in three, a gap in five).
    #[arg(long, default_value = "field")]
    pub faults: String,
    /// Seed of the meters' randomness (same seed, same readings).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Seconds between two progress lines.
    #[arg(long, default_value_t = 10)]
    pub report_every: u64,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Simulated gateways of the demo tenant.
    #[arg(long, default_value_t = 6)]
    pub gateways: usize,
    /// Meters per simulated gateway.
    #[arg(long, default_value_t = 6)]
    pub devices: usize,
    /// Seconds between two batches of one gateway.
    #[arg(long, default_value_t = 15)]
    pub interval: u64,
    /// Days of history written before the gateways start reporting live.
    #[arg(long, default_value_t = 7)]
    pub history_days: u32,
}

#[derive(Debug, Args)]
pub struct ConsumptionArgs {
    /// Tenant name.
    #[arg(long)]
    pub tenant: String,
    /// Gateway MAC.
    #[arg(long)]
    pub gateway: String,
    /// One device of the gateway (default: all of them).
    #[arg(long)]
    pub device: Option<String>,
    /// First day (YYYY-MM-DD, in the tenant's time zone).
    #[arg(long)]
    pub from: String,
    /// Last day included (YYYY-MM-DD).
    #[arg(long)]
    pub to: String,
    /// hour, day or month.
    #[arg(long, default_value = "day")]
    pub bucket: String,
    /// csv (to standard output) or xlsx (to --out).
    #[arg(long, default_value = "csv")]
    pub format: String,
    /// File to write (needed for xlsx).
    #[arg(long)]
    pub out: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Tenant name.
    #[arg(long)]
    pub tenant: String,
    /// device (one or several --device of --gateway: a comparison), gateway, medium or tenant.
    #[arg(long)]
    pub scope: String,
    /// Gateway MAC (scopes device and gateway).
    #[arg(long)]
    pub gateway: Option<String>,
    /// Device code of --gateway (scope device); repeat it to compare several devices.
    #[arg(long)]
    pub device: Vec<String>,
    /// water, energy, gas or other (scope medium).
    #[arg(long)]
    pub medium: Option<String>,
    /// First day (YYYY-MM-DD, in the tenant's time zone).
    #[arg(long)]
    pub from: String,
    /// Last day included (YYYY-MM-DD).
    #[arg(long)]
    pub to: String,
    /// hour, day, week (ISO, from Monday) or month (from the tenant's billing day when it has one).
    #[arg(long, default_value = "day")]
    pub bucket: String,
    /// Compare with the previous period or the same period a year earlier (may be repeated).
    #[arg(long)]
    pub compare: Vec<String>,
    /// pdf, xlsx or csv.
    #[arg(long)]
    pub format: String,
    /// Language of the report: pt-BR (default) or en.
    #[arg(long, default_value = "pt-BR")]
    pub lang: String,
    /// File to write.
    #[arg(long)]
    pub out: PathBuf,
    /// CSV: comma (default) or semicolon (with decimal commas).
    #[arg(long, default_value = "comma")]
    pub delimiter: String,
    /// CSV: start with a UTF-8 byte-order mark (for Excel).
    #[arg(long)]
    pub bom: bool,
}

#[derive(Debug, Subcommand)]
pub enum ReadingsCommand {
    /// Export raw readings with UTC and local times, streamed (memory does not grow with rows).
    Export(ReadingsExportArgs),
}

#[derive(Debug, Args)]
pub struct ReadingsExportArgs {
    /// Tenant name.
    #[arg(long)]
    pub tenant: String,
    /// Only this gateway's devices (MAC).
    #[arg(long)]
    pub gateway: Option<String>,
    /// Only this device of --gateway (its code).
    #[arg(long)]
    pub device: Option<String>,
    /// From this instant (RFC 3339), or from the start of this day (YYYY-MM-DD, tenant's zone).
    #[arg(long)]
    pub from: String,
    /// Until this instant, excluded (RFC 3339), or through this day (YYYY-MM-DD, included).
    #[arg(long)]
    pub to: String,
    /// csv or xlsx.
    #[arg(long, default_value = "csv")]
    pub format: String,
    /// File to write (default for CSV: standard output; needed for XLSX).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// CSV: comma (default) or semicolon (with decimal commas).
    #[arg(long, default_value = "comma")]
    pub delimiter: String,
    /// CSV: start with a UTF-8 byte-order mark (for Excel).
    #[arg(long)]
    pub bom: bool,
}

#[derive(Debug, Args)]
pub struct QueryBenchArgs {
    /// Database to load (default: a new SQLite file in a temporary directory).
    #[arg(long)]
    pub database_url: Option<String>,
    /// Devices (meters of the simulator's mix, 32 per gateway).
    #[arg(long, default_value_t = 10_000)]
    pub devices: usize,
    /// Days of readings per device, from 1 January 2025 (America/Sao_Paulo).
    #[arg(long, default_value_t = 365)]
    pub days: u32,
    /// Minutes between two readings of a device (53: 10k devices x 365 days = 99 M readings).
    #[arg(long, default_value_t = 53)]
    pub interval_minutes: u32,
    /// Readings per load transaction.
    #[arg(long, default_value_t = 100_000)]
    pub batch: usize,
    /// Timed rounds (each a random device, month and day) per query.
    #[arg(long, default_value_t = 200)]
    pub samples: usize,
    /// Measure a data set of this size loaded by an earlier run into --database-url, without
    /// loading it again.
    #[arg(long)]
    pub reuse: bool,
}
