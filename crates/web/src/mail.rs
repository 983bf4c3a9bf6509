//! Outgoing email (invitations, password resets) through SMTP with lettre. Without an SMTP
//! server configured, the development mailer writes each message as an `.eml` file into an
//! outbox folder readable by its owner only, so a developer can follow an invitation link; the
//! log names the file and never holds the message (its single-use links are credentials: SPEC
//! §11).

use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

#[derive(Clone)]
pub enum Mailer {
    Smtp {
        transport: AsyncSmtpTransport<Tokio1Executor>,
        from: Mailbox,
    },
    /// Development: messages go to files in `dir` (mode 0600; they contain single-use links).
    Outbox {
        dir: std::path::PathBuf,
        from: Mailbox,
    },
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Smtp { from, .. } => {
                f.debug_struct("Mailer::Smtp").field("from", &from.to_string()).finish()
            }
            Self::Outbox { dir, from } => {
                f.debug_struct("Mailer::Outbox").field("dir", dir).field("from", &from.to_string()).finish()
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("invalid SMTP URL: {0}")]
    Url(String),
    #[error("invalid address {0:?}")]
    Address(String),
    #[error("cannot build the message: {0}")]
    Build(String),
    #[error("SMTP delivery failed: {0}")]
    Smtp(String),
    #[error("cannot write to the mail outbox {0}")]
    Outbox(String),
}

impl Mailer {
    /// An SMTP mailer from a URL: `smtp://host:25` (plain, for a local relay),
    /// `smtp://user:pass@host:587?tls=required` (STARTTLS) or `smtps://user:pass@host:465`.
    pub fn smtp(url: &str, from: &str) -> Result<Self, MailError> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| MailError::Url(e.to_string()))?
            .build();
        Ok(Self::Smtp { transport, from: parse_mailbox(from)? })
    }

    /// The development outbox: one `.eml` file per message in `dir` (created when missing).
    pub fn outbox(dir: impl Into<std::path::PathBuf>, from: &str) -> Result<Self, MailError> {
        Ok(Self::Outbox { dir: dir.into(), from: parse_mailbox(from)? })
    }

    /// Checks a sender address without building a mailer.
    pub fn check_from(from: &str) -> Result<(), MailError> {
        parse_mailbox(from).map(|_| ())
    }

    pub async fn send(&self, to: &str, subject: &str, body: String) -> Result<(), MailError> {
        let to_box = parse_mailbox(to)?;
        let (Self::Smtp { from, .. } | Self::Outbox { from, .. }) = self;
        let message = Message::builder()
            .from(from.clone())
            .to(to_box)
            .subject(subject)
            .body(body)
            .map_err(|e| MailError::Build(e.to_string()))?;
        match self {
            Self::Smtp { transport, .. } => {
                transport.send(message).await.map_err(|e| MailError::Smtp(e.to_string()))?;
                Ok(())
            }
            Self::Outbox { dir, .. } => {
                let path = write_private(dir, &message.formatted())?;
                // The file, not the message: it holds a single-use link.
                tracing::info!(%to, subject, file = %path.display(), "no SMTP server configured: message written to the outbox");
                Ok(())
            }
        }
    }
}

/// Writes `bytes` to a new file in `dir` that only its owner may read.
fn write_private(dir: &std::path::Path, bytes: &[u8]) -> Result<std::path::PathBuf, MailError> {
    use std::io::Write as _;
    use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
    let io = |e: std::io::Error| MailError::Outbox(format!("{}: {e}", dir.display()));
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io)?;
    let name = format!(
        "{}-{}.eml",
        chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ"),
        crate::session::new_token().get(..12).unwrap_or("x")
    );
    let path = dir.join(name);
    let mut file =
        std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path).map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    Ok(path)
}

fn parse_mailbox(address: &str) -> Result<Mailbox, MailError> {
    address.parse().map_err(|_| MailError::Address(address.to_owned()))
}
