//! Outgoing email (invitations, password resets) through SMTP with lettre. Without an SMTP
//! server configured, the development mailer writes each message to the log instead, so a
//! developer can follow an invitation link; it says so loudly at start.

use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

#[derive(Clone)]
pub enum Mailer {
    Smtp {
        transport: AsyncSmtpTransport<Tokio1Executor>,
        from: Mailbox,
    },
    /// Development: messages go to the log (they contain single-use links: never in production).
    Log {
        from: Mailbox,
    },
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Smtp { from, .. } => {
                f.debug_struct("Mailer::Smtp").field("from", &from.to_string()).finish()
            }
            Self::Log { from } => f.debug_struct("Mailer::Log").field("from", &from.to_string()).finish(),
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

    pub fn log(from: &str) -> Result<Self, MailError> {
        Ok(Self::Log { from: parse_mailbox(from)? })
    }

    pub async fn send(&self, to: &str, subject: &str, body: String) -> Result<(), MailError> {
        let to_box = parse_mailbox(to)?;
        match self {
            Self::Smtp { transport, from } => {
                let message = Message::builder()
                    .from(from.clone())
                    .to(to_box)
                    .subject(subject)
                    .body(body)
                    .map_err(|e| MailError::Build(e.to_string()))?;
                transport.send(message).await.map_err(|e| MailError::Smtp(e.to_string()))?;
                Ok(())
            }
            Self::Log { from } => {
                tracing::info!(%from, %to, subject, body = %body, "development mailer: message not sent, logged instead");
                Ok(())
            }
        }
    }
}

fn parse_mailbox(address: &str) -> Result<Mailbox, MailError> {
    address.parse().map_err(|_| MailError::Address(address.to_owned()))
}
