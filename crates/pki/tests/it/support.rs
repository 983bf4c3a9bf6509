//! Shared fixtures: a CA per test, a scratch directory, and running `openssl`.

use std::path::{Path, PathBuf};
use std::process::Command;
use tds_domain::Mac;
use tds_pki::{Ca, CaAlgorithm, CaSubject};
use tempfile::TempDir;

pub fn mac(s: &str) -> Mac {
    Mac::parse(s).unwrap()
}

/// A fast (ECDSA P-384) CA.
pub fn ca() -> Ca {
    Ca::create(&CaSubject::default(), CaAlgorithm::EcdsaP384, 20).unwrap()
}

/// A scratch directory with files written into it.
pub struct Scratch {
    pub dir: TempDir,
}

impl Scratch {
    pub fn new() -> Self {
        Self { dir: tempfile::tempdir().unwrap() }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    /// Runs `openssl args…` in the scratch directory.
    pub fn openssl(&self, args: &[&str]) -> Openssl {
        openssl_in(self.dir.path(), args)
    }
}

/// What one `openssl` run said.
#[derive(Debug)]
pub struct Openssl {
    pub ok: bool,
    /// stdout and stderr together.
    pub out: String,
}

pub fn openssl_in(dir: &Path, args: &[&str]) -> Openssl {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl command must be installed for these tests");
    let mut out = String::from_utf8_lossy(&output.stdout).into_owned();
    out.push_str(&String::from_utf8_lossy(&output.stderr));
    Openssl { ok: output.status.success(), out }
}

impl Openssl {
    #[track_caller]
    pub fn success(self) -> String {
        assert!(self.ok, "openssl failed:\n{}", self.out);
        self.out
    }

    #[track_caller]
    pub fn failure(self) -> String {
        assert!(!self.ok, "openssl should have failed:\n{}", self.out);
        self.out
    }
}

/// `openssl verify` of `cert` (PEM text) against `ca` (PEM text), with extra args.
pub fn verify(ca_pem: &str, cert_pem: &str, extra: &[&str]) -> Openssl {
    let s = Scratch::new();
    s.write("ca.crt", ca_pem);
    s.write("cert.crt", cert_pem);
    let mut args = vec!["verify", "-CAfile", "ca.crt"];
    args.extend_from_slice(extra);
    args.push("cert.crt");
    s.openssl(&args)
}

/// `openssl x509 -noout -text` of a PEM certificate.
pub fn x509_text(cert_pem: &str) -> String {
    let s = Scratch::new();
    s.write("cert.crt", cert_pem);
    s.openssl(&["x509", "-in", "cert.crt", "-noout", "-text"]).success()
}
