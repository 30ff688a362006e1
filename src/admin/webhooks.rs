//! Webhooks: each `[[webhook]]` gets every event it asks for as a JSON POST, signed with
//! HMAC-SHA256, in order, retried with backoff. Events reach an endpoint through a bounded
//! queue fed by the event follower, never by a login: a dead endpoint fills its own queue, and
//! what is dropped is logged and counted (`agentgw_webhook_dropped_total`).

use crate::events::Events;
use crate::login::AuditEvent;
use crate::metrics::Metrics;
use crate::store::AuditRecord;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tracing::{debug, warn};

/// One `[[webhook]]`.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Where to POST: `http://host:port/path`.
    pub url: HttpUrl,
    /// The HMAC-SHA256 key of the `X-Agentgw-Signature` header (at least 16 characters).
    pub secret: String,
    /// Which events (`AuditEvent` names); empty: every event.
    #[serde(default)]
    pub events: Vec<String>,
    /// Events waiting for this endpoint at most; beyond it new events are dropped, logged and
    /// counted.
    #[serde(default = "default_webhook_queue")]
    pub queue: usize,
    /// Tries per event (with backoff 0.5 s, 1 s, 2 s … up to 30 s between them).
    #[serde(default = "default_webhook_tries")]
    pub max_tries: u32,
    /// How long one POST may take.
    #[serde(default = "default_webhook_timeout")]
    pub timeout_ms: u64,
}

fn default_webhook_queue() -> usize {
    1000
}
fn default_webhook_tries() -> u32 {
    8
}
fn default_webhook_timeout() -> u64 {
    5000
}

impl WebhookConfig {
    /// What is wrong with the values serde cannot check: the key (under `[[webhook]]`) and
    /// the reason.
    pub fn problem(&self) -> Option<(&'static str, String)> {
        if self.secret.len() < 16 {
            return Some(("secret", "must be at least 16 characters".into()));
        }
        if let Some(e) = self.events.iter().find(|e| AuditEvent::parse(e).is_none()) {
            let names: Vec<&str> = AuditEvent::ALL.iter().map(|e| e.as_str()).collect();
            let reason = format!("{e:?} is not an event; the events are {}", names.join(", "));
            return Some(("events", reason));
        }
        if !(1..=100_000).contains(&self.queue) {
            return Some(("queue", "must be 1 to 100000".into()));
        }
        if !(1..=100).contains(&self.max_tries) {
            return Some(("max_tries", "must be 1 to 100".into()));
        }
        if !(100..=60_000).contains(&self.timeout_ms) {
            return Some(("timeout_ms", "must be 100 to 60000".into()));
        }
        None
    }
}

/// An `http://` URL, checked when read: the parts a POST needs, and the text as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    /// `host:port`, for the connection and the Host header.
    pub authority: String,
    pub path: String,
    text: String,
}

impl std::fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::str::FromStr for HttpUrl {
    type Err = String;
    fn from_str(s: &str) -> Result<HttpUrl, String> {
        parse_http_url(s)
    }
}

impl<'de> Deserialize<'de> for HttpUrl {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Parses `http://host[:port][/path]`; the reason when it is not one.
pub fn parse_http_url(url: &str) -> Result<HttpUrl, String> {
    let Some(rest) = url.strip_prefix("http://") else {
        return Err(if url.starts_with("https://") {
            "https is not supported yet: use http:// to a local relay, or a plain-HTTP endpoint on a trusted network".into()
        } else {
            format!("{url:?} is not an http:// URL")
        });
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let ok = !authority.is_empty()
        && !authority.contains('@')
        && authority
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
        && !path.chars().any(|c| c.is_whitespace() || c.is_control());
    if !ok {
        return Err(format!("{url:?} is not an http:// URL"));
    }
    let authority = if authority.ends_with(']') || !authority.contains(':') {
        format!("{authority}:80")
    } else {
        authority.to_string()
    };
    Ok(HttpUrl {
        authority,
        path: path.to_string(),
        text: url.to_string(),
    })
}

/// `sha256=` and the hex HMAC-SHA256 of `timestamp.body` under `secret`.
pub fn signature(secret: &str, timestamp: u64, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!(
        "sha256={}",
        crate::hex::encode(&mac.finalize().into_bytes())
    )
}

/// Starts one delivery task per webhook.
pub fn start(hooks: &[WebhookConfig], events: &Events, metrics: Arc<Metrics>) {
    for hook in hooks {
        let url = hook.url.clone();
        let (tx, rx) = mpsc::channel(hook.queue);
        tokio::spawn(enqueue(
            hook.clone(),
            events.subscribe(),
            tx,
            metrics.clone(),
        ));
        tokio::spawn(deliver(hook.clone(), url, rx, metrics.clone()));
    }
}

async fn enqueue(
    hook: WebhookConfig,
    mut events: tokio::sync::broadcast::Receiver<Arc<AuditRecord>>,
    queue: mpsc::Sender<Arc<AuditRecord>>,
    metrics: Arc<Metrics>,
) {
    use tokio::sync::broadcast::error::RecvError;
    let mut dropped: u64 = 0;
    loop {
        let e = match events.recv().await {
            Ok(e) => e,
            Err(RecvError::Lagged(n)) => {
                metrics.webhooks_dropped.fetch_add(n, Ordering::Relaxed);
                warn!(url = %hook.url, dropped = n, "webhook events dropped: the event follower ran ahead");
                continue;
            }
            Err(RecvError::Closed) => break,
        };
        if !hook.events.is_empty() && !hook.events.iter().any(|x| *x == e.event) {
            continue;
        }
        if queue.try_send(e).is_err() {
            dropped += 1;
            metrics.webhooks_dropped.fetch_add(1, Ordering::Relaxed);
            if dropped == 1 || dropped % 100 == 0 {
                warn!(url = %hook.url, dropped, queue = hook.queue, "webhook queue full: events dropped (the endpoint is slow or down)");
            }
        }
    }
}

async fn deliver(
    hook: WebhookConfig,
    url: HttpUrl,
    mut queue: mpsc::Receiver<Arc<AuditRecord>>,
    metrics: Arc<Metrics>,
) {
    while let Some(e) = queue.recv().await {
        let body = match serde_json::to_vec(&*e) {
            Ok(b) => b,
            Err(_) => continue,
        };
        let mut backoff = Duration::from_millis(500);
        let mut tries = 0;
        loop {
            tries += 1;
            let r = tokio::time::timeout(
                Duration::from_millis(hook.timeout_ms),
                post(&hook, &url, &e, &body),
            )
            .await
            .unwrap_or_else(|_| Err("timed out".into()));
            match r {
                Ok(()) => {
                    metrics.webhooks_delivered.fetch_add(1, Ordering::Relaxed);
                    debug!(url = %hook.url, id = e.id, "webhook delivered");
                    break;
                }
                Err(why) if tries >= hook.max_tries => {
                    metrics.webhooks_dropped.fetch_add(1, Ordering::Relaxed);
                    warn!(url = %hook.url, id = e.id, event = %e.event, tries, error = %why, "webhook event dropped after its last try");
                    break;
                }
                Err(why) => {
                    debug!(url = %hook.url, id = e.id, tries, error = %why, "webhook failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    }
}

/// One POST; Ok on a 2xx answer.
async fn post(
    hook: &WebhookConfig,
    url: &HttpUrl,
    e: &AuditRecord,
    body: &[u8],
) -> Result<(), String> {
    let timestamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: agentgw/{}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nX-Agentgw-Event: {}\r\nX-Agentgw-Delivery: {}\r\nX-Agentgw-Timestamp: {timestamp}\r\n\
         X-Agentgw-Signature: {}\r\nConnection: close\r\n\r\n",
        url.path,
        url.authority,
        env!("CARGO_PKG_VERSION"),
        body.len(),
        e.event,
        e.id,
        signature(&hook.secret, timestamp, body),
    );
    let mut s = tokio::net::TcpStream::connect(&url.authority)
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    s.write_all(head.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    s.write_all(body).await.map_err(|e| e.to_string())?;
    // The status line is all we need; read at most 1 KiB of the answer.
    let mut buf = [0u8; 1024];
    let mut n = 0;
    while n < buf.len() {
        let got = s.read(&mut buf[n..]).await.map_err(|e| e.to_string())?;
        if got == 0 || buf[..n + got].windows(2).any(|w| w == b"\r\n") {
            n += got;
            break;
        }
        n += got;
    }
    let line = String::from_utf8_lossy(&buf[..n]);
    let code: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| "no HTTP status line in the answer".to_string())?;
    if (200..300).contains(&code) {
        Ok(())
    } else {
        Err(format!("HTTP {code}"))
    }
}

impl serde::Serialize for HttpUrl {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_http_url("http://127.0.0.1:9000/hook").unwrap(),
            HttpUrl {
                text: "http://127.0.0.1:9000/hook".into(),
                authority: "127.0.0.1:9000".into(),
                path: "/hook".into()
            }
        );
        assert_eq!(
            parse_http_url("http://acd.example").unwrap().authority,
            "acd.example:80"
        );
        assert_eq!(
            parse_http_url("http://[::1]").unwrap().authority,
            "[::1]:80"
        );
        assert!(parse_http_url("https://x").unwrap_err().contains("https"));
        assert!(parse_http_url("ftp://x").is_err());
        assert!(parse_http_url("http://u:p@x/").is_err());
    }

    #[test]
    fn signature_is_hmac_sha256_of_timestamp_dot_body() {
        // Python: hmac.new(b"0123456789abcdef", b"1700000000.{}", hashlib.sha256).hexdigest()
        assert_eq!(
            signature("0123456789abcdef", 1_700_000_000, b"{}"),
            "sha256=e4f8e2ecae2295b2ddb2f0b5584c8275e226c0ebe9b3b819e70156bb67122e3e"
        );
    }
}
