//! Outgoing email through SMTP with lettre, for every part of the server that writes to people:
//! the web application (invitations, password resets) and the background jobs (alert
//! notifications, scheduled reports with their file attached), which must not import each other. Without an SMTP
//! server configured, the development mailer writes each message as an `.eml` file into an
//! outbox folder readable by its owner only, so a developer can follow an invitation link; the
//! log names the file and never holds the message (its single-use links are credentials: SPEC
//! §11).
//!
//! Owns: the transport and the sender address. Must not: compose messages (their callers know
//! the language and the content) or retry (the alert outbox decides when to try again).

use lettre::message::header::ContentType;
use lettre::message::{Mailbox, MultiPart, SinglePart};
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

/// A file sent with a message.
#[derive(Debug, Clone)]
pub struct Attachment {
    pub file_name: String,
    pub content_type: String,
    pub bytes: Vec<u8>,
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

    /// Sends a plain-text message to one address (the SMTP server's answer, or the file written).
    pub async fn send(&self, to: &str, subject: &str, body: String) -> Result<(), MailError> {
        self.send_to_all(&[to], subject, body).await
    }

    /// Sends one plain-text message to several addresses at once (one SMTP transaction: all of
    /// them get it, or the call fails).
    pub async fn send_to_all(&self, to: &[&str], subject: &str, body: String) -> Result<(), MailError> {
        let message = self.builder(to, subject)?.body(body).map_err(|e| MailError::Build(e.to_string()))?;
        self.deliver(to, subject, message).await
    }

    /// Sends a plain-text message with a file attached (a scheduled report) to one address.
    pub async fn send_with_attachment(
        &self,
        to: &str,
        subject: &str,
        body: String,
        attachment: &Attachment,
    ) -> Result<(), MailError> {
        let content_type = ContentType::parse(&attachment.content_type)
            .map_err(|e| MailError::Build(format!("content type {:?}: {e}", attachment.content_type)))?;
        let parts = MultiPart::mixed().singlepart(SinglePart::plain(body)).singlepart(
            lettre::message::Attachment::new(attachment.file_name.clone())
                .body(attachment.bytes.clone(), content_type),
        );
        let message =
            self.builder(&[to], subject)?.multipart(parts).map_err(|e| MailError::Build(e.to_string()))?;
        self.deliver(&[to], subject, message).await
    }

    fn builder(&self, to: &[&str], subject: &str) -> Result<lettre::message::MessageBuilder, MailError> {
        let (Self::Smtp { from, .. } | Self::Outbox { from, .. }) = self;
        let mut builder = Message::builder().from(from.clone()).subject(subject);
        for address in to {
            builder = builder.to(parse_mailbox(address)?);
        }
        Ok(builder)
    }

    async fn deliver(&self, to: &[&str], subject: &str, message: Message) -> Result<(), MailError> {
        let to = to.join(", ");
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
    let name = format!("{}-{}.eml", chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ"), random_suffix());
    let path = dir.join(name);
    let mut file =
        std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path).map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    Ok(path)
}

/// Twelve hex digits, so that two messages written in the same millisecond get two files.
fn random_suffix() -> String {
    format!("{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff)
}

fn parse_mailbox(address: &str) -> Result<Mailbox, MailError> {
    address.parse().map_err(|_| MailError::Address(address.to_owned()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn the_outbox_keeps_each_message_in_a_file_only_its_owner_reads() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let mailer = Mailer::outbox(dir.path().join("outbox"), "TDS <tds@example.com>").unwrap();
        mailer.send("ana@example.com", "Olá", "first".into()).await.unwrap();
        mailer.send("ana@example.com", "Olá", "second".into()).await.unwrap();
        let files: Vec<_> =
            std::fs::read_dir(dir.path().join("outbox")).unwrap().map(|e| e.unwrap().path()).collect();
        assert_eq!(files.len(), 2);
        for file in files {
            assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
            let text = std::fs::read_to_string(&file).unwrap();
            assert!(text.contains("To: ana@example.com"), "{text}");
        }
    }

    #[test]
    fn a_bad_sender_or_recipient_is_refused() {
        assert!(Mailer::check_from("not an address").is_err());
        assert!(Mailer::check_from("TDS <tds@example.com>").is_ok());
    }
}
