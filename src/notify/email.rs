//! Email over SMTP, with lettre's tokio transport.
//!
//! `smtp_url` takes lettre's URL form: `smtp://host:25` (no TLS),
//! `smtp://host:587?tls=required` (STARTTLS), `smtps://host:465` (TLS), with
//! `user:password@` for authentication.

use std::time::Duration;

use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::SendError;

/// An SMTP server and the sender of the hub's emails.
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    /// The right-hand side of Message-IDs.
    domain: String,
}

impl Mailer {
    pub fn new(smtp_url: &str, from: &str) -> anyhow::Result<Mailer> {
        let from: Mailbox =
            from.parse().map_err(|err| anyhow::anyhow!("mail_from {from:?} is not an email address: {err}"))?;
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(smtp_url)
            .map_err(|err| anyhow::anyhow!("smtp_url is not an SMTP URL: {err}"))?
            .timeout(Some(Duration::from_secs(20)))
            .build();
        let domain = from.email.domain().to_owned();
        Ok(Mailer { transport, from, domain })
    }

    /// Sends a plain-text email. Its Message-ID is made from `id` (the
    /// notification's), so a copy sent again after a crash carries the same
    /// one and mail systems can tell. Returns the Message-ID.
    pub async fn send(&self, id: &str, to: &str, subject: &str, body: &str) -> Result<String, SendError> {
        let to: Mailbox =
            to.parse().map_err(|err| SendError::permanent(format!("{to:?} is not an email address: {err}")))?;
        let message_id = format!("<{id}@{}>", self.domain);
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .message_id(Some(message_id.clone()))
            .header(ContentType::TEXT_PLAIN)
            .body(body.to_owned())
            .map_err(|err| SendError::permanent(format!("the email cannot be built: {err}")))?;
        match self.transport.send(message).await {
            Ok(_) => Ok(message_id),
            // A 5xx answer (no such mailbox, refused) will be the same next
            // time; anything else (4xx, a dropped connection) may pass.
            Err(err) if err.is_permanent() => Err(SendError::permanent(format!("SMTP: {err}"))),
            Err(err) => Err(SendError::transient(format!("SMTP: {err}"))),
        }
    }
}
