//! Outgoing email: SMTP through lettre when `SMTP_URL` is set, otherwise `.eml` files in the
//! outbox directory. Messages go through a queue drained by a background task, so a request's
//! timing never depends on whether an email was sent (no enumeration through timing) and a slow
//! SMTP server never holds a request. The log names the recipient's hash and the file, never
//! the body (codes and reset links are secrets). Every message has a text part and an HTML part.

use std::path::PathBuf;
use std::time::Duration;

use lettre::message::{Mailbox, Message, MultiPart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use tokio::sync::mpsc;

pub use crate::mail_html::Look;

pub struct Email {
    pub to: String,
    pub subject: String,
    pub body: String,
}

#[derive(Clone)]
pub struct Mailer {
    tx: mpsc::Sender<Email>,
    /// `pages.product_name`: `{product}` in a body becomes it.
    product: String,
}

enum Transport {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Outbox(PathBuf),
}

impl Mailer {
    pub fn start(smtp_url: Option<&str>, outbox: PathBuf, from: &str, look: Look) -> anyhow::Result<Mailer> {
        let from: Mailbox = from.parse().map_err(|e| anyhow::anyhow!("email.from: {e}"))?;
        let transport = match smtp_url {
            Some(url) => Transport::Smtp(
                AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
                    .map_err(|e| anyhow::anyhow!("SMTP_URL: {e}"))?
                    .timeout(Some(Duration::from_secs(15)))
                    .build(),
            ),
            None => {
                crate::files::private_dir(&outbox)?;
                Transport::Outbox(outbox)
            }
        };
        let product = look.product.clone();
        let (tx, mut rx) = mpsc::channel::<Email>(1024);
        tokio::spawn(async move {
            while let Some(email) = rx.recv().await {
                let to_hash = &crate::crypto::sha256_hex(email.to.as_bytes())[..12];
                let msg = match build(&from, &email, &look) {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(to_hash, error = %e, "email not sent: cannot build the message");
                        continue;
                    }
                };
                let mut delay = Duration::from_millis(200);
                for attempt in 1..=4 {
                    let result = match &transport {
                        Transport::Smtp(t) => t.send(msg.clone()).await.map(|_| None).map_err(|e| e.to_string()),
                        Transport::Outbox(dir) => {
                            let path = dir.join(format!("{}-{}.eml", crate::db::now(), crate::crypto::random_id128()));
                            crate::files::write_private_async(&path, &msg.formatted()).await.map(|_| Some(path)).map_err(|e| e.to_string())
                        }
                    };
                    match result {
                        Ok(path) => {
                            metrics::counter!("authgate_emails_sent_total").increment(1);
                            tracing::info!(to_hash, subject = %email.subject, outbox_file = path.as_ref().map(|p| p.display().to_string()), "email sent");
                            break;
                        }
                        Err(e) if attempt < 4 => {
                            tracing::warn!(to_hash, attempt, error = %e, "email send failed, retrying");
                            tokio::time::sleep(delay).await;
                            delay *= 4;
                        }
                        Err(e) => {
                            metrics::counter!("authgate_emails_failed_total").increment(1);
                            tracing::error!(to_hash, error = %e, "email send failed");
                        }
                    }
                }
            }
        });
        Ok(Mailer { tx, product })
    }

    /// Queues an email; never waits for delivery. `{product}` in the body names the product
    /// (`pages.product_name`).
    pub fn send(&self, to: &str, subject: &str, body: String) {
        let body = body.replace("{product}", &self.product);
        let email = Email { to: to.to_string(), subject: subject.to_string(), body };
        if self.tx.try_send(email).is_err() {
            metrics::counter!("authgate_emails_dropped_total").increment(1);
            tracing::error!("email queue full or closed: email dropped");
        }
    }
}

/// A text part and, beside it, the same words in HTML (`mail_html.rs`).
fn build(from: &Mailbox, email: &Email, look: &Look) -> anyhow::Result<Message> {
    let html = crate::mail_html::render(look, &email.subject, &email.body);
    Ok(Message::builder()
        .from(from.clone())
        .to(email.to.parse()?)
        .subject(email.subject.clone())
        .multipart(MultiPart::alternative_plain_html(email.body.clone(), html))?)
}
