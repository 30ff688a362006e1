//! A SIP client's side of the wire: just enough of a UAC to place a call, answer a BYE and
//! hang up, over UDP (with retransmission), TCP or TLS, on one socket per call; and the
//! message parser the load generator and the tests' phone share.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// How a call's signalling goes.
#[derive(Clone)]
pub enum Signalling {
    Udp,
    Tcp,
    /// SIP over TLS, the gateway's certificate checked with this configuration.
    Tls(Arc<rustls::ClientConfig>),
}

impl std::fmt::Debug for Signalling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.via())
    }
}

impl Signalling {
    /// The Contact URI's transport parameter (none for UDP).
    pub fn contact_param(&self) -> &'static str {
        match self {
            Signalling::Udp => "",
            Signalling::Tcp => ";transport=tcp",
            Signalling::Tls(_) => ";transport=tls",
        }
    }

    /// The transport as a Via header names it.
    pub fn via(&self) -> &'static str {
        match self {
            Signalling::Udp => "UDP",
            Signalling::Tcp => "TCP",
            Signalling::Tls(_) => "TLS",
        }
    }

    /// A TLS client configuration trusting the CA certificates in `ca_pem` (TLS 1.2 and 1.3).
    pub fn tls(ca_pem: &[u8]) -> Result<Signalling, String> {
        use rustls::pki_types::{pem::PemObject, CertificateDer};
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem) {
            let cert = cert.map_err(|e| format!("not a PEM certificate: {e}"))?;
            roots.add(cert).map_err(|e| e.to_string())?;
        }
        if roots.is_empty() {
            return Err("no certificate in it".into());
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Signalling::Tls(Arc::new(config)))
    }
}

/// A connected byte stream: TCP, or TLS over it.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<S: AsyncRead + AsyncWrite + Unpin + Send> Stream for S {}

/// The largest SIP message accepted.
const MAX_MESSAGE: usize = 16 * 1024;

/// A received SIP message: the start line, headers and body as text.
#[derive(Debug, Clone)]
pub struct Msg {
    text: String,
    head_end: usize,
}

impl Msg {
    pub fn parse(data: &[u8]) -> Option<Msg> {
        let text = std::str::from_utf8(data).ok()?.to_string();
        let head_end = text.find("\r\n\r\n")?;
        Some(Msg { text, head_end })
    }

    pub fn start(&self) -> &str {
        self.text.lines().next().unwrap_or("")
    }

    /// The status code of a response.
    pub fn status(&self) -> Option<u16> {
        let s = self.start();
        s.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok()
    }

    /// The method of a request.
    pub fn method(&self) -> Option<&str> {
        let s = self.start();
        if s.starts_with("SIP/2.0") {
            None
        } else {
            s.split(' ').next()
        }
    }

    /// Every value of a header, by its long name or its compact form (RFC 3261 §7.3.3), in
    /// any case.
    pub fn headers<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> {
        let compact = compact_form(name);
        self.text[..self.head_end]
            .split("\r\n")
            .skip(1)
            .filter_map(move |l| {
                let (n, v) = l.split_once(':')?;
                let n = n.trim();
                (n.eq_ignore_ascii_case(name)
                    || (!compact.is_empty() && n.eq_ignore_ascii_case(compact)))
                .then(|| v.trim())
            })
    }

    /// The first value of a header.
    pub fn header<'a>(&'a self, name: &'a str) -> Option<&'a str> {
        self.headers(name).next()
    }

    pub fn body(&self) -> &str {
        &self.text[self.head_end + 4..]
    }

    /// The CSeq method.
    pub fn cseq_method(&self) -> &str {
        self.header("CSeq")
            .and_then(|c| c.split_whitespace().nth(1))
            .unwrap_or("")
    }

    /// The CSeq number.
    pub fn cseq(&self) -> Option<u32> {
        self.header("CSeq")?.split_whitespace().next()?.parse().ok()
    }

    /// A 200 OK to this request, with its Via, From, To, Call-ID and CSeq.
    pub fn ok(&self) -> String {
        let mut out = String::with_capacity(512);
        out.push_str("SIP/2.0 200 OK\r\n");
        for v in self.headers("Via") {
            out.push_str("Via: ");
            out.push_str(v);
            out.push_str("\r\n");
        }
        for name in ["From", "To", "Call-ID", "CSeq"] {
            if let Some(v) = self.header(name) {
                out.push_str(name);
                out.push_str(": ");
                out.push_str(v);
                out.push_str("\r\n");
            }
        }
        out.push_str("Content-Length: 0\r\n\r\n");
        out
    }
}

/// The compact form of a header name (RFC 3261 §7.3.3, RFC 3515, RFC 4028), or "" when it has
/// none.
fn compact_form(name: &str) -> &'static str {
    const FORMS: [(&str, &str); 12] = [
        ("Call-ID", "i"),
        ("Contact", "m"),
        ("Content-Encoding", "e"),
        ("Content-Length", "l"),
        ("Content-Type", "c"),
        ("From", "f"),
        ("Subject", "s"),
        ("Supported", "k"),
        ("To", "t"),
        ("Via", "v"),
        ("Refer-To", "r"),
        ("Session-Expires", "x"),
    ];
    FORMS
        .iter()
        .find(|(long, _)| long.eq_ignore_ascii_case(name))
        .map_or("", |(_, c)| c)
}

/// The value of `param=` in a header value (`tag`, …).
pub fn param<'a>(value: &'a str, name: &str) -> Option<&'a str> {
    value.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// The RTP address of an SDP body.
pub fn sdp_media(sdp: &str) -> Option<SocketAddr> {
    let ip = sdp
        .lines()
        .find_map(|l| {
            l.strip_prefix("c=IN IP4 ")
                .or_else(|| l.strip_prefix("c=IN IP6 "))
        })?
        .trim();
    let port: u16 = sdp
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(SocketAddr::new(ip.parse().ok()?, port))
}

/// One call's signalling connection.
pub enum Channel {
    Udp {
        socket: UdpSocket,
        to: SocketAddr,
        buf: Box<[u8; MAX_MESSAGE]>,
    },
    Stream {
        stream: Box<dyn Stream>,
        local: SocketAddr,
        buf: Vec<u8>,
    },
}

impl Channel {
    pub async fn open(
        how: &Signalling,
        local_ip: std::net::IpAddr,
        to: SocketAddr,
    ) -> std::io::Result<Channel> {
        let timed_out = |what| std::io::Error::new(std::io::ErrorKind::TimedOut, what);
        let tcp = match how {
            Signalling::Udp => {
                let socket = UdpSocket::bind(SocketAddr::new(local_ip, 0)).await?;
                return Ok(Channel::Udp {
                    socket,
                    to,
                    buf: Box::new([0; MAX_MESSAGE]),
                });
            }
            Signalling::Tcp | Signalling::Tls(_) => {
                tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(to))
                    .await
                    .map_err(|_| timed_out("connect timed out"))??
            }
        };
        tcp.set_nodelay(true)?;
        let local = tcp.local_addr()?;
        let stream: Box<dyn Stream> = match how {
            Signalling::Tls(config) => {
                let name = rustls::pki_types::ServerName::IpAddress(to.ip().into());
                let connect = tokio_rustls::TlsConnector::from(config.clone()).connect(name, tcp);
                let tls = tokio::time::timeout(Duration::from_secs(5), connect)
                    .await
                    .map_err(|_| timed_out("TLS handshake timed out"))??;
                Box::new(tls)
            }
            _ => Box::new(tcp),
        };
        Ok(Channel::Stream {
            stream,
            local,
            buf: Vec::with_capacity(4096),
        })
    }

    /// Over TCP or TLS: nothing to retransmit.
    pub fn is_reliable(&self) -> bool {
        matches!(self, Channel::Stream { .. })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        match self {
            Channel::Udp { socket, .. } => socket.local_addr(),
            Channel::Stream { local, .. } => Ok(*local),
        }
    }

    pub async fn send(&mut self, msg: &str) -> std::io::Result<()> {
        match self {
            Channel::Udp { socket, to, .. } => {
                socket.send_to(msg.as_bytes(), *to).await.map(|_| ())
            }
            Channel::Stream { stream, .. } => stream.write_all(msg.as_bytes()).await,
        }
    }

    /// Ends a TCP or TLS connection cleanly (TLS's close_notify, then FIN), within a second.
    pub async fn close(&mut self) {
        if let Channel::Stream { stream, .. } = self {
            let _ = tokio::time::timeout(Duration::from_secs(1), stream.shutdown()).await;
        }
    }

    /// The next message; `None` when the connection closed or something unparseable came.
    pub async fn recv(&mut self) -> Option<Msg> {
        match self {
            Channel::Udp { socket, buf, .. } => loop {
                // An ICMP error (nothing listening) is not an answer: keep waiting, so that
                // the call ends as "no answer".
                let Ok((n, _)) = socket.recv_from(&mut buf[..]).await else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                if let Some(m) = Msg::parse(&buf[..n]) {
                    return Some(m);
                }
            },
            Channel::Stream { stream, buf, .. } => loop {
                if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = std::str::from_utf8(&buf[..end]).ok()?;
                    let len: usize = head
                        .split("\r\n")
                        .find_map(|l| {
                            let (n, v) = l.split_once(':')?;
                            let n = n.trim();
                            (n.eq_ignore_ascii_case("content-length")
                                || n.eq_ignore_ascii_case("l"))
                            .then(|| v.trim().parse().ok())?
                        })
                        .unwrap_or(0);
                    let total = end + 4 + len;
                    if buf.len() >= total {
                        let m = Msg::parse(&buf[..total]);
                        buf.drain(..total);
                        return m;
                    }
                }
                if buf.len() > MAX_MESSAGE {
                    return None;
                }
                let mut chunk = [0u8; 4096];
                let n = stream.read(&mut chunk).await.ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&chunk[..n]);
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_a_uac_needs() {
        let m = Msg::parse(
            b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\nv: SIP/2.0/UDP b\r\nt: <sip:x@y>;tag=abc\r\nCSeq: 1 INVITE\r\nl: 3\r\n\r\nv=0",
        )
        .unwrap();
        assert_eq!(m.status(), Some(200));
        assert_eq!(m.headers("Via").count(), 2);
        assert_eq!(param(m.header("To").unwrap(), "tag"), Some("abc"));
        assert_eq!(m.cseq_method(), "INVITE");
        assert_eq!(m.body(), "v=0");
        assert_eq!(
            sdp_media("v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 4000 RTP/AVP 0\r\n"),
            Some("127.0.0.1:4000".parse().unwrap())
        );
    }
}
