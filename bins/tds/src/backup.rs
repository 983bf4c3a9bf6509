//! `tds backup`, `tds restore` and `tds db copy` (SPEC §9).
//!
//! A backup is one ZIP file:
//!
//! - `manifest.json`: format, TDS version, time, source database kind, schema version, rows per
//!   table and the readings' checksum, and the SHA-256 of every other entry;
//! - `database.sqlite`: one consistent snapshot of the whole database as a SQLite file, whatever
//!   the installation runs on: SQLite's own `VACUUM INTO` (a read transaction, so gateways keep
//!   reporting), or, on PostgreSQL, every table copied out of one `REPEATABLE READ` snapshot
//!   (`tds_store::transfer`). No client tools of the database are needed, and a backup of either
//!   kind restores into either kind;
//! - `pki/…`: the PKI directory as it is on disk (the CA key stays encrypted when it is), with
//!   each file's mode.
//!
//! A restore checks every entry's checksum, refuses a backup of a newer schema, refuses a
//! database with rows or a PKI directory with files unless `--force`, upgrades an older backup's
//! schema, and finally checks the restored rows and readings against the manifest.

use crate::config::Config;
use anyhow::{Context, bail, ensure};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use tds_store::transfer::{self, Census, Progress};
use tds_store::{Db, DbOptions};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipArchive, ZipWriter};

const FORMAT: u32 = 1;
const MANIFEST: &str = "manifest.json";
const DATABASE: &str = "database.sqlite";

#[derive(Debug, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub tds_version: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// `sqlite` or `postgres`: what the installation ran on.
    pub source: String,
    pub schema_version: i64,
    pub census: Census,
    pub files: Vec<Entry>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Entry {
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
    pub mode: u32,
}

/// `tds backup FILE`.
pub async fn backup(config: &Config, file: &Path, force: bool) -> anyhow::Result<()> {
    ensure!(force || !file.exists(), "{} exists; use --force to overwrite it", file.display());
    let url = config.database_url();
    let db = Db::connect(&url, &config.db_options())
        .await
        .with_context(|| format!("cannot open database {}", tds_store::redact_url(&url)))?;
    let schema_version =
        db.schema_version().await?.context("the database has no TDS schema: nothing to back up")?;
    let parent = file.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let work = tempfile::Builder::new().prefix(".tds-backup-").tempdir_in(parent).with_context(|| {
        format!("cannot create a working directory in {} (the backup is assembled there)", parent.display())
    })?;
    let snapshot = work.path().join(DATABASE);
    let started = std::time::Instant::now();
    snapshot_into(&db, &snapshot).await?;
    db.close().await;
    // The manifest's figures are read from the snapshot itself: exactly what the file holds.
    let copy = open_sqlite(&snapshot).await?;
    let census = transfer::census(&copy).await?;
    copy.close().await;

    let mut files = vec![(DATABASE.to_owned(), snapshot.clone())];
    let pki = config.pki_dir();
    for path in files_under(&pki)? {
        let name = path.strip_prefix(&pki).map(|p| format!("pki/{}", p.to_string_lossy()))?;
        files.push((name, path));
    }
    let mut entries = Vec::with_capacity(files.len());
    for (name, path) in &files {
        entries.push(Entry {
            path: name.clone(),
            bytes: std::fs::metadata(path)?.len(),
            sha256: sha256_file(path)?,
            mode: mode_of(path)?,
        });
    }
    let manifest = Manifest {
        format: FORMAT,
        tds_version: env!("CARGO_PKG_VERSION").to_owned(),
        created_at: chrono::Utc::now(),
        source: db.backend().to_owned(),
        schema_version,
        census,
        files: entries,
    };
    let partial = work.path().join("backup.zip");
    write_zip(&partial, &manifest, &files)?;
    std::fs::rename(&partial, file).with_context(|| format!("cannot write {}", file.display()))?;
    let size = std::fs::metadata(file)?.len();
    println!(
        "backup written to {} ({:.1} MB, {} s): schema {}, {} rows in {} tables ({} readings), {} PKI files",
        file.display(),
        size as f64 / 1e6,
        started.elapsed().as_secs(),
        manifest.schema_version,
        manifest.census.total_rows(),
        manifest.census.tables.len(),
        manifest.census.rows("readings").unwrap_or(0),
        manifest.files.len() - 1,
    );
    Ok(())
}

/// One consistent snapshot of `db` as a new SQLite file at `path`.
async fn snapshot_into(db: &Db, path: &Path) -> anyhow::Result<()> {
    match db {
        Db::Sqlite(_) => {
            let target = path.to_str().context("the backup path is not UTF-8")?;
            tds_store::transfer::vacuum_into(db, target).await.context("VACUUM INTO failed")?;
        }
        Db::Postgres(_) => {
            let target = open_sqlite(path).await?;
            target.migrate().await?;
            let mut progress = ProgressLine::new("backup");
            transfer::copy(db, &target, &mut |p| progress.show(p))
                .await
                .context("copying out of PostgreSQL")?;
            progress.done();
            target.close().await;
        }
    }
    Ok(())
}

async fn open_sqlite(path: &Path) -> anyhow::Result<Db> {
    let url = format!("sqlite://{}", path.display());
    Ok(Db::connect(&url, &DbOptions { max_connections: 2, ..DbOptions::default() }).await?)
}

fn write_zip(path: &Path, manifest: &Manifest, files: &[(String, PathBuf)]) -> anyhow::Result<()> {
    let out = std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut zip = ZipWriter::new(std::io::BufWriter::new(out));
    let options =
        SimpleFileOptions::default().compression_method(CompressionMethod::Deflated).large_file(true);
    zip.start_file(MANIFEST, options.unix_permissions(0o600))?;
    zip.write_all(&serde_json::to_vec_pretty(manifest)?)?;
    for ((name, file), entry) in files.iter().zip(&manifest.files) {
        zip.start_file(name.as_str(), options.unix_permissions(entry.mode))?;
        std::io::copy(&mut std::fs::File::open(file)?, &mut zip)?;
    }
    zip.finish()?.flush()?;
    Ok(())
}

/// `tds restore FILE`.
pub async fn restore(config: &Config, file: &Path, force: bool) -> anyhow::Result<()> {
    let mut archive = ZipArchive::new(
        std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?,
    )
    .with_context(|| format!("{} is not a TDS backup (not a ZIP file)", file.display()))?;
    let manifest: Manifest = {
        let mut m = archive.by_name(MANIFEST).context("not a TDS backup: no manifest.json")?;
        let mut text = Vec::new();
        m.read_to_end(&mut text)?;
        serde_json::from_slice(&text).context("the backup's manifest is unreadable")?
    };
    ensure!(manifest.format == FORMAT, "backup format {} is not known to this TDS", manifest.format);
    let url = config.database_url();
    let db = Db::connect(&url, &config.db_options())
        .await
        .with_context(|| format!("cannot open database {}", tds_store::redact_url(&url)))?;
    let known = db.known_schema_version();
    if manifest.schema_version > known {
        bail!(
            "the backup's schema is version {}, newer than this TDS knows ({known}); restore it with TDS {} or newer",
            manifest.schema_version,
            manifest.tds_version
        );
    }
    // Every refusal before the first change.
    let pki = config.pki_dir();
    let existing_pki = files_under(&pki)?;
    let rows = rows_in(&db).await?;
    if !force {
        ensure!(
            rows.is_none(),
            "the database {} already holds an installation ({}); restore into an empty one or use --force",
            tds_store::redact_url(&url),
            rows.unwrap_or_default()
        );
        ensure!(
            existing_pki.is_empty(),
            "{} already holds PKI files; restore into an empty data directory or use --force",
            pki.display()
        );
    }

    let work = tempfile::Builder::new()
        .prefix(".tds-restore-")
        .tempdir_in(config.data_dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")))
        .context("cannot create a working directory next to the data directory")?;
    for entry in &manifest.files {
        extract(&mut archive, entry, work.path())?;
    }
    let snapshot = work.path().join(DATABASE);
    let started = std::time::Instant::now();

    // The database.
    let restored = match db {
        Db::Sqlite(ref s) => {
            let path = s.path().to_owned();
            db.close().await;
            for suffix in ["", "-wal", "-shm"] {
                let p = PathBuf::from(format!("{}{suffix}", path.display()));
                if p.exists() {
                    std::fs::remove_file(&p).with_context(|| format!("cannot replace {}", p.display()))?;
                }
            }
            std::fs::rename(&snapshot, &path)
                .or_else(|_| std::fs::copy(&snapshot, &path).map(|_| ()))
                .with_context(|| format!("cannot write {}", path.display()))?;
            let db = Db::connect(&url, &config.db_options()).await?;
            db.migrate().await?;
            db
        }
        Db::Postgres(_) => {
            if rows.is_some() {
                tds_store::transfer::drop_schema(&db).await?;
            }
            db.migrate().await?;
            let source = open_sqlite(&snapshot).await?;
            source.migrate().await?;
            let mut progress = ProgressLine::new("restore");
            transfer::copy(&source, &db, &mut |p| progress.show(p))
                .await
                .context("copying into PostgreSQL")?;
            progress.done();
            source.close().await;
            db
        }
    };
    let census = transfer::census(&restored).await?;
    restored.close().await;
    for (table, n) in &manifest.census.tables {
        let got = census.rows(table).unwrap_or(0);
        ensure!(got == *n, "table {table}: the backup lists {n} rows but {got} were restored");
    }
    ensure!(
        census.readings_checksum == manifest.census.readings_checksum,
        "the restored readings differ from the backup's"
    );

    // The PKI directory.
    if force && pki.exists() {
        std::fs::remove_dir_all(&pki).with_context(|| format!("cannot replace {}", pki.display()))?;
    }
    for entry in manifest.files.iter().filter(|e| e.path.starts_with("pki/")) {
        let to = config.data_dir.join(&entry.path);
        if let Some(dir) = to.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::rename(work.path().join(&entry.path), &to)
            .or_else(|_| std::fs::copy(work.path().join(&entry.path), &to).map(|_| ()))
            .with_context(|| format!("cannot write {}", to.display()))?;
        set_mode(&to, entry.mode)?;
    }
    println!(
        "restored {} (taken {} from {} at schema {}) in {} s: {} rows in {} tables ({} readings) verified, {} PKI files",
        file.display(),
        manifest.created_at.format("%Y-%m-%d %H:%M:%S UTC"),
        manifest.source,
        manifest.schema_version,
        started.elapsed().as_secs(),
        census.total_rows(),
        census.tables.len(),
        census.rows("readings").unwrap_or(0),
        manifest.files.len() - 1,
    );
    Ok(())
}

/// Extracts one entry under `dir`, checking its size and checksum against the manifest.
fn extract(archive: &mut ZipArchive<std::fs::File>, entry: &Entry, dir: &Path) -> anyhow::Result<()> {
    let relative = Path::new(&entry.path);
    ensure!(
        relative.components().all(|c| matches!(c, std::path::Component::Normal(_))),
        "the backup names an unsafe path {:?}",
        entry.path
    );
    let mut zipped =
        archive.by_name(&entry.path).with_context(|| format!("the backup lacks {}", entry.path))?;
    let to = dir.join(relative);
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut out = std::fs::File::create(&to)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut bytes = 0u64;
    loop {
        let n = zipped.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])?;
        bytes += n as u64;
    }
    out.sync_all()?;
    ensure!(
        bytes == entry.bytes && hex(&hasher.finalize()) == entry.sha256,
        "{} in the backup is damaged (its checksum does not match the manifest)",
        entry.path
    );
    Ok(())
}

/// `None` when the database holds no TDS rows; else a short description of what it holds.
async fn rows_in(db: &Db) -> anyhow::Result<Option<String>> {
    if db.schema_version().await?.is_none() {
        return Ok(None);
    }
    let census = transfer::census(db).await?;
    Ok((census.total_rows() > 0).then(|| format!("{} rows", census.total_rows())))
}

/// `tds db copy --from URL --to URL`.
pub async fn db_copy(config: &Config, from: &str, to: &str) -> anyhow::Result<()> {
    let options = config.db_options();
    let source = Db::connect(from, &options)
        .await
        .with_context(|| format!("cannot open the source {}", tds_store::redact_url(from)))?;
    let target = Db::connect(to, &options)
        .await
        .with_context(|| format!("cannot open the target {}", tds_store::redact_url(to)))?;
    target.migrate().await.context("cannot create the schema in the target")?;
    let started = std::time::Instant::now();
    let mut progress = ProgressLine::new("copy");
    let census = transfer::copy(&source, &target, &mut |p| progress.show(p)).await?;
    progress.done();
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "copied {} to {} in {seconds:.1} s, verified:",
        tds_store::redact_url(from),
        tds_store::redact_url(to)
    );
    for (table, rows) in census.tables.iter().filter(|(_, n)| *n > 0) {
        println!("  {table:<20} {rows:>12}");
    }
    println!(
        "  {} rows ({:.0} rows/s); readings checksum {}",
        census.total_rows(),
        census.total_rows() as f64 / seconds.max(0.001),
        census.readings_checksum
    );
    source.close().await;
    target.close().await;
    Ok(())
}

/// A progress line on standard error, redrawn in place on a terminal, every half second.
struct ProgressLine {
    what: &'static str,
    last: Option<std::time::Instant>,
    terminal: bool,
}

impl ProgressLine {
    fn new(what: &'static str) -> Self {
        use std::io::IsTerminal;
        Self { what, last: None, terminal: std::io::stderr().is_terminal() }
    }

    fn show(&mut self, p: Progress<'_>) {
        let now = std::time::Instant::now();
        if self.last.is_some_and(|t| now - t < std::time::Duration::from_millis(500)) && p.rows < p.total {
            return;
        }
        self.last = Some(now);
        let width = 30;
        let percent = (p.rows * 100).checked_div(p.total).unwrap_or(100);
        let filled = (percent as usize * width / 100).min(width);
        let rate = p.rows as f64 / p.started.elapsed().as_secs_f64().max(0.001);
        let line = format!(
            "{} [{}{}] {:>3}% {} {}/{} · {:.0} rows/s",
            self.what,
            "#".repeat(filled),
            ".".repeat(width - filled),
            percent,
            p.table,
            p.table_rows,
            p.table_total,
            rate
        );
        if self.terminal {
            eprint!("\r{line:<100}");
        } else {
            eprintln!("{line}");
        }
    }

    fn done(&self) {
        if self.terminal {
            eprintln!();
        }
    }
}

fn files_under(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    if !dir.exists() {
        return Ok(out);
    }
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).with_context(|| format!("cannot read {}", d.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

fn sha256_file(path: &Path) -> anyhow::Result<String> {
    let mut file = std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(hex(&hasher.finalize()));
        }
        hasher.update(&buf[..n]);
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn mode_of(path: &Path) -> anyhow::Result<u32> {
    use std::os::unix::fs::PermissionsExt;
    Ok(std::fs::metadata(path)?.permissions().mode() & 0o777)
}

fn set_mode(path: &Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o777))?;
    Ok(())
}
