//! Builds the front-end assets that the binary embeds (Bootstrap, Chart.js, htmx, Swagger UI): installs the npm packages pinned by
//! `web/package-lock.json` (only when `web/node_modules` is missing or older than the lockfile)
//! and copies the files TDS serves into `$OUT_DIR/assets`, next to our own CSS and JS from
//! `web/src`. Nothing is fetched at run time: `rust-embed` bakes `$OUT_DIR/assets` into the binary.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::{env, fs};

/// (file in `node_modules`, path under `/assets/`)
const VENDOR: &[(&str, &str)] = &[
    ("bootstrap/dist/css/bootstrap.min.css", "vendor/bootstrap.min.css"),
    ("bootstrap/dist/js/bootstrap.bundle.min.js", "vendor/bootstrap.bundle.min.js"),
    ("bootstrap-icons/font/bootstrap-icons.min.css", "vendor/bootstrap-icons.min.css"),
    ("bootstrap-icons/font/fonts/bootstrap-icons.woff2", "vendor/fonts/bootstrap-icons.woff2"),
    ("bootstrap-icons/font/fonts/bootstrap-icons.woff", "vendor/fonts/bootstrap-icons.woff"),
    ("chart.js/dist/chart.umd.min.js", "vendor/chart.umd.min.js"),
    ("htmx.org/dist/htmx.min.js", "vendor/htmx.min.js"),
    // The API browser at /api/docs.
    ("swagger-ui-dist/swagger-ui-bundle.js", "vendor/swagger-ui-bundle.js"),
    ("swagger-ui-dist/swagger-ui.css", "vendor/swagger-ui.css"),
    // The brand's droplet as the tab icon (also answered at /favicon.ico).
    ("bootstrap-icons/icons/droplet-half.svg", "vendor/favicon.svg"),
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let web = manifest.join("../../web").canonicalize()?;
    let lock = web.join("package-lock.json");
    let installed = web.join("node_modules/.package-lock.json");
    println!("cargo::rerun-if-changed={}", lock.display());
    println!("cargo::rerun-if-changed={}", web.join("src").display());
    println!("cargo::rerun-if-changed={}", installed.display());

    if is_stale(&installed, &lock) {
        let npm = env::var("NPM").unwrap_or_else(|_| "npm".into());
        let status = Command::new(&npm)
            .args(["ci", "--no-audit", "--no-fund", "--ignore-scripts"])
            .current_dir(&web)
            .status()
            .map_err(|e| {
                format!("cannot run `{npm} ci` in {}: {e}. Install Node.js and npm.", web.display())
            })?;
        if !status.success() {
            return Err(format!("`{npm} ci` in {} failed ({status})", web.display()).into());
        }
    }

    let out = PathBuf::from(env::var("OUT_DIR")?).join("assets");
    if out.exists() {
        fs::remove_dir_all(&out)?;
    }
    for (from, to) in VENDOR {
        copy(&web.join("node_modules").join(from), &out.join(to))?;
    }
    for entry in fs::read_dir(web.join("src"))? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            copy(&entry.path(), &out.join("app").join(entry.file_name()))?;
        }
    }
    Ok(())
}

fn is_stale(installed: &Path, lock: &Path) -> bool {
    let modified = |p: &Path| fs::metadata(p).and_then(|m| m.modified()).ok();
    match (modified(installed), modified(lock)) {
        (Some(i), Some(l)) => i < l,
        _ => true,
    }
}

fn copy(from: &Path, to: &Path) -> Result<(), Box<dyn std::error::Error>> {
    if let Some(dir) = to.parent() {
        fs::create_dir_all(dir)?;
    }
    fs::copy(from, to).map_err(|e| format!("cannot copy {}: {e}", from.display()))?;
    Ok(())
}
