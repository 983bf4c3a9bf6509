//! The CA directory on disk: `ca.crt`, `ca.key` (optionally passphrase-encrypted), `server.crt`
//! and `server.key`, key files with mode 0600 on unix. `init` never overwrites an existing CA: it
//! creates `ca.key` exclusively before writing anything else. The broker consumer's client
//! certificate (`consumer.crt`, `consumer.key`) is issued into the same directory on first use.

use crate::ca::{Ca, CaAlgorithm, CaSubject, DEFAULT_CA_VALIDITY_YEARS};
use crate::error::{PkiError, Result};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

pub const CA_CERT_FILE: &str = "ca.crt";
pub const CA_KEY_FILE: &str = "ca.key";
pub const SERVER_CERT_FILE: &str = "server.crt";
pub const SERVER_KEY_FILE: &str = "server.key";
pub const CONSUMER_CERT_FILE: &str = "consumer.crt";
pub const CONSUMER_KEY_FILE: &str = "consumer.key";

/// A consumer certificate this close to its end is replaced when next asked for.
const CONSUMER_RENEW_BEFORE: chrono::TimeDelta = chrono::TimeDelta::days(30);

/// A CA directory, loaded.
pub struct CaFiles {
    pub dir: PathBuf,
    pub ca: Ca,
    pub server_cert_pem: String,
    pub server_key_pem: String,
}

impl fmt::Debug for CaFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaFiles")
            .field("dir", &self.dir)
            .field("ca", &self.ca)
            .field("server_key_pem", &"[redacted]")
            .finish_non_exhaustive()
    }
}

impl CaFiles {
    /// Creates a CA ([`DEFAULT_CA_VALIDITY_YEARS`]) and the MQTT server certificate for
    /// `server_sans` (empty: `localhost`, `127.0.0.1`) in `dir` (created if missing). Refuses when
    /// `ca.key` or `ca.crt` already exists there. Only `ca.key` is encrypted with `passphrase`.
    pub fn init(
        dir: &Path,
        subject: &CaSubject,
        algorithm: CaAlgorithm,
        passphrase: Option<&str>,
        server_sans: &[String],
    ) -> Result<Self> {
        let key_path = dir.join(CA_KEY_FILE);
        let cert_path = dir.join(CA_CERT_FILE);
        if key_path.exists() {
            return Err(PkiError::CaKeyExists { path: key_path });
        }
        if cert_path.exists() {
            return Err(PkiError::CaCertExists { path: cert_path });
        }
        let ca = Ca::create(subject, algorithm, DEFAULT_CA_VALIDITY_YEARS)?;
        let key_pem = ca.key_pem(passphrase)?;
        let server = ca.issue_server_certificate(server_sans)?;

        fs::create_dir_all(dir).map_err(|e| PkiError::io(dir, e))?;
        // Exclusive create: if another `init` raced us here, it wins and we stop.
        let mut key_file = open_secret(&key_path, true).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                PkiError::CaKeyExists { path: key_path.clone() }
            } else {
                PkiError::io(&key_path, e)
            }
        })?;
        key_file
            .write_all(key_pem.as_bytes())
            .and_then(|()| key_file.sync_all())
            .map_err(|e| PkiError::io(&key_path, e))?;
        fs::write(&cert_path, ca.cert_pem()).map_err(|e| PkiError::io(&cert_path, e))?;
        write_secret(&dir.join(SERVER_KEY_FILE), &server.key_pem)?;
        let server_cert_path = dir.join(SERVER_CERT_FILE);
        fs::write(&server_cert_path, &server.cert_pem).map_err(|e| PkiError::io(&server_cert_path, e))?;
        Ok(Self { dir: dir.to_owned(), ca, server_cert_pem: server.cert_pem, server_key_pem: server.key_pem })
    }

    /// Loads the four files of a CA directory.
    pub fn load(dir: &Path, passphrase: Option<&str>) -> Result<Self> {
        let read = |name: &str| {
            let path = dir.join(name);
            fs::read_to_string(&path).map_err(|e| PkiError::io(path, e))
        };
        let ca = Ca::load(&read(CA_CERT_FILE)?, &read(CA_KEY_FILE)?, passphrase)?;
        Ok(Self {
            dir: dir.to_owned(),
            ca,
            server_cert_pem: read(SERVER_CERT_FILE)?,
            server_key_pem: read(SERVER_KEY_FILE)?,
        })
    }

    pub fn ca_cert_path(&self) -> PathBuf {
        self.dir.join(CA_CERT_FILE)
    }

    pub fn ca_key_path(&self) -> PathBuf {
        self.dir.join(CA_KEY_FILE)
    }

    pub fn server_cert_path(&self) -> PathBuf {
        self.dir.join(SERVER_CERT_FILE)
    }

    pub fn server_key_path(&self) -> PathBuf {
        self.dir.join(SERVER_KEY_FILE)
    }

    /// The broker consumer's client certificate and key (PEM) for the service `common_name`:
    /// `consumer.crt` and `consumer.key` of this directory, issued by the CA (and written) when
    /// they are missing, name another service, are not signed by this CA, or are within
    /// 30 days of their end. Several processes starting together on one directory issue one
    /// certificate: the first to create `consumer.key.lock` issues, the others wait for it.
    pub fn consumer_certificate(&self, common_name: &str) -> Result<(String, String)> {
        let cert_path = self.dir.join(CONSUMER_CERT_FILE);
        let key_path = self.dir.join(CONSUMER_KEY_FILE);
        let lock_path = self.dir.join(format!("{CONSUMER_KEY_FILE}.lock"));
        let usable = || -> Option<(String, String)> {
            let cert = fs::read_to_string(&cert_path).ok()?;
            let key = fs::read_to_string(&key_path).ok()?;
            let info = crate::parse_certificate(&cert).ok()?;
            let fresh = info.not_after - chrono::Utc::now() > CONSUMER_RENEW_BEFORE;
            (info.subject_cn.as_deref() == Some(common_name) && fresh && signed_by(&cert, &self.ca))
                .then_some((cert, key))
        };
        for _ in 0..100 {
            if !lock_path.exists()
                && let Some(found) = usable()
            {
                return Ok(found);
            }
            match open_secret(&lock_path, true) {
                Ok(_) => {
                    let issued =
                        self.ca.issue_service_client(common_name, crate::SERVICE_CLIENT_VALIDITY_DAYS);
                    let written = issued.and_then(|issued| {
                        write_secret(&key_path, &issued.key_pem)?;
                        fs::write(&cert_path, &issued.cert_pem).map_err(|e| PkiError::io(&cert_path, e))?;
                        Ok((issued.cert_pem, issued.key_pem))
                    });
                    let _ = fs::remove_file(&lock_path);
                    return written;
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    // Another process is issuing it; a stale lock (a crash while issuing) is
                    // taken over after 10 s.
                    let stale = fs::metadata(&lock_path)
                        .and_then(|m| m.modified())
                        .is_ok_and(|t| t.elapsed().is_ok_and(|age| age > std::time::Duration::from_secs(10)));
                    if stale {
                        let _ = fs::remove_file(&lock_path);
                    } else {
                        std::thread::sleep(std::time::Duration::from_millis(100));
                    }
                }
                Err(e) => return Err(PkiError::io(&lock_path, e)),
            }
        }
        Err(PkiError::io(
            &lock_path,
            std::io::Error::new(std::io::ErrorKind::TimedOut, "another process holds this lock"),
        ))
    }
}

/// Whether the certificate in `cert_pem` carries a valid signature of `ca`.
fn signed_by(cert_pem: &str, ca: &Ca) -> bool {
    let Ok((_, pem)) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()) else { return false };
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(&pem.contents) else { return false };
    let Ok((_, issuer)) = x509_parser::parse_x509_certificate(ca.cert_der()) else { return false };
    cert.verify_signature(Some(issuer.public_key())).is_ok()
}

/// Opens a key file readable by its owner only (mode 0600 on unix, from creation on).
fn open_secret(path: &Path, exclusive: bool) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true);
    if exclusive {
        options.create_new(true);
    } else {
        options.create(true).truncate(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let file = options.open(path)?;
    // `mode` applies only to new files; an existing one keeps its bits unless we set them.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(fs::Permissions::from_mode(0o600))?;
    }
    Ok(file)
}

/// Writes a key file with mode 0600 (unix), replacing an existing one.
pub fn write_secret(path: &Path, contents: &str) -> Result<()> {
    let mut file = open_secret(path, false).map_err(|e| PkiError::io(path, e))?;
    file.write_all(contents.as_bytes()).and_then(|()| file.sync_all()).map_err(|e| PkiError::io(path, e))
}
