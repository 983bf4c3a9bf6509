//! Runs the real `tds` executable in its own working directory with a given database.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub struct Tds {
    pub dir: tempfile::TempDir,
    pub database_url: Option<String>,
}

impl Tds {
    /// A fresh working directory; `database_url` `None` means no configuration at all.
    pub fn new(database_url: Option<&str>) -> Self {
        tds_testkit::tls_provider();
        Self { dir: tempfile::tempdir().unwrap(), database_url: database_url.map(str::to_owned) }
    }

    pub fn command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tds"));
        cmd.current_dir(self.dir.path());
        // Only what the test chooses: no configuration leaks in from the developer's shell.
        for (k, _) in std::env::vars() {
            if k.starts_with("TDS_") {
                cmd.env_remove(k);
            }
        }
        if let Some(url) = &self.database_url {
            cmd.env("TDS_DATABASE_URL", url);
        }
        cmd.env("TDS_LOG_LEVEL", "warn");
        cmd
    }

    /// Runs `tds ARGS` with `stdin` as standard input.
    pub fn run(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = self
            .command()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    }

    /// Runs and asserts success, returning standard output.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args, "");
        assert!(out.status.success(), "tds {args:?} failed:\n{}\n{}", text(&out.stdout), text(&out.stderr));
        text(&out.stdout)
    }

    pub fn file(&self, name: &str, content: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        path
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `tds serve` of a [`Tds`] on free ports, ready once its MQTT endpoint listens; stopped with
/// SIGTERM by [`Server::stop`], which asserts a clean exit.
pub struct Server {
    pub child: std::process::Child,
    pub http: u16,
    pub mqtt: u16,
}

impl Server {
    pub async fn start(tds: &Tds) -> Self {
        Self::start_with(tds, &[]).await
    }

    /// Like [`start`](Self::start), with more environment variables.
    pub async fn start_with(tds: &Tds, env: &[(&str, &str)]) -> Self {
        let (http, mqtt) = (free_port(), free_port());
        let child = tds
            .command()
            .arg("serve")
            .envs(env.iter().copied())
            .env("TDS_HTTP_ADDR", format!("127.0.0.1:{http}"))
            .env("TDS_MQTT_ADDR", format!("127.0.0.1:{mqtt}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", mqtt)).is_err() {
            assert!(std::time::Instant::now() < deadline, "the MQTT endpoint never listened");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        Self { child, http, mqtt }
    }

    pub async fn stop(mut self) {
        Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        let status = tokio::task::spawn_blocking(move || self.child.wait()).await.unwrap().unwrap();
        assert!(status.success());
    }
}
