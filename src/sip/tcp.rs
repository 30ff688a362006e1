//! SIP over TCP and TLS: agentgw accepts the connections itself, within limits (and completes
//! a TLS handshake, `tls.rs`), and hands each to rsipstack, which parses and answers on it.
//! rsipstack's own listener accepts without a limit, and each connection costs about 72 KiB
//! (two 64 KiB buffers) for up to its idle timeout, so one peer could hold the machine's
//! memory with idle connections (`[sip] max_tcp_connections`,
//! `max_tcp_connections_per_source`). And rsipstack reads a
//! connection as fast as the peer sends, parsing into an unbounded queue, so a guard thread
//! shuts down the connections of a source that sends too much (`guard`).

use crate::limits::RefusalLog;
use rsipstack::transaction::endpoint::EndpointInner;
use rsipstack::transport::tcp::TcpConnection;
use rsipstack::transport::tls::TlsConnection;
use rsipstack::transport::{SipAddr, SipConnection, TransportInspector};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// The TCP connections open, by source, against their limits; shared with the metrics.
#[derive(Debug, Default)]
pub struct TcpConnections {
    state: Mutex<TcpState>,
    /// Connections closed at once for a limit (`agentgw_tcp_connections_refused_total`).
    pub refused: AtomicU64,
    /// Open connections shut down for sending too much (`agentgw_tcp_connections_shut_down_total`).
    pub shut_down_total: AtomicU64,
    /// Connections closed for a message slower than `[sip] tcp_message_timeout_secs`
    /// (`agentgw_tcp_connections_too_slow_total`).
    pub too_slow_total: AtomicU64,
    /// TLS handshakes that failed or took too long (`agentgw_tls_handshakes_failed_total`).
    pub tls_failed: AtomicU64,
}

/// shutdown(2) both ways: the SIP stack reads the end of the connection and lets it go.
fn shut(fd: &OwnedFd) -> bool {
    // SAFETY: shutdown(2) on a socket descriptor the caller owns (a duplicate, so the socket
    // stays open until the SIP stack closes its own descriptor).
    unsafe { libc::shutdown(std::os::fd::AsRawFd::as_raw_fd(fd), libc::SHUT_RDWR) == 0 }
}

#[derive(Debug, Default)]
struct TcpState {
    max_total: usize,
    max_per_source: usize,
    /// Bytes a source's connections may send in any second (0: no limit).
    max_bytes_per_sec: u64,
    /// The id of the last connection admitted.
    last_id: u64,
    total: usize,
    by_source: HashMap<IpAddr, usize>,
    /// A duplicate of each open connection's socket, by peer, to shut it down from here and
    /// to read how much it received (`guard`).
    sockets: HashMap<SocketAddr, Watched>,
    log: RefusalLog,
}

/// An open connection as the guard sees it.
#[derive(Debug)]
struct Watched {
    /// Which connection from this peer address (a port can come back after a close).
    id: u64,
    fd: OwnedFd,
    /// The kernel's count of bytes received at the last look, and the bytes of each of the
    /// last `WINDOWS` looks.
    received: u64,
    recent: [u64; WINDOWS],
    at: usize,
}

/// The guard looks every `LOOK` and sums the last `WINDOWS` looks (a second).
const LOOK: Duration = Duration::from_millis(100);
const WINDOWS: usize = 10;

/// Bytes the kernel received on a TCP socket so far (`tcpi_bytes_received`), if it says.
fn bytes_received(fd: &OwnedFd) -> Option<u64> {
    // SAFETY: an all-zero tcp_info is valid; getsockopt writes at most `len` bytes into it.
    unsafe {
        let mut info: libc::tcp_info = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        let r = libc::getsockopt(
            std::os::fd::AsRawFd::as_raw_fd(fd),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        );
        (r == 0).then_some(info.tcpi_bytes_received)
    }
}

/// Why a connection was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpRefusal {
    Total,
    Source,
}

/// One connection counted; uncounted when dropped.
#[derive(Debug)]
pub struct TcpSlot {
    connections: Arc<TcpConnections>,
    peer: SocketAddr,
    id: u64,
}

impl Drop for TcpSlot {
    fn drop(&mut self) {
        let mut s = self.connections.lock();
        s.total = s.total.saturating_sub(1);
        let source = self.peer.ip();
        if let Some(n) = s.by_source.get_mut(&source) {
            *n -= 1;
            if *n == 0 {
                s.by_source.remove(&source);
            }
        }
        if s.sockets.get(&self.peer).is_some_and(|w| w.id == self.id) {
            s.sockets.remove(&self.peer);
        }
    }
}

impl TcpConnections {
    /// Sets the limits (0: none); connections already open stay.
    pub fn set_limits(&self, max_total: usize, max_per_source: usize, max_bytes_per_sec: u64) {
        let mut s = self.lock();
        s.max_total = max_total;
        s.max_per_source = max_per_source;
        s.max_bytes_per_sec = max_bytes_per_sec;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TcpState> {
        match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Connections open now (`agentgw_tcp_connections`).
    pub fn open(&self) -> usize {
        self.lock().total
    }

    /// Shuts down the connection from `peer` (both ways): the SIP stack reads the end of it
    /// and lets it go. False if no such connection is open.
    pub fn shut_down(&self, peer: SocketAddr) -> bool {
        let watched = self.lock().sockets.remove(&peer);
        let done = watched.is_some_and(|w| shut(&w.fd));
        if done {
            self.shut_down_total.fetch_add(1, Ordering::Relaxed);
        }
        done
    }

    /// Every `LOOK` until `cancel`: the connections of a source that sent more than the byte
    /// limit in the last second are shut down (`shut_down_total`). The SIP stack reads a TCP connection
    /// as fast as the peer sends, parsing into an unbounded queue (about 3.7 KiB an INVITE),
    /// so a flood must be cut at the socket, before it is parsed: an INVITE flood on one
    /// connection took the gateway past 12 GB without this.
    /// It runs on a thread of its own, so that it looks on time while a flood keeps the
    /// async runtime busy.
    pub fn guard(self: Arc<Self>, cancel: CancellationToken) -> std::io::Result<()> {
        std::thread::Builder::new()
            .name("agentgw-tcp-guard".into())
            .spawn(move || {
                while !cancel.is_cancelled() {
                    std::thread::sleep(LOOK);
                    self.look();
                }
            })
            .map(|_| ())
    }

    /// One look of `guard`: the bytes of each source's connections over the last second.
    fn look(&self) {
        let mut shut_down = Vec::new();
        {
            let mut s = self.lock();
            let limit = s.max_bytes_per_sec;
            let mut by_source: HashMap<IpAddr, u64> = HashMap::new();
            for (peer, w) in s.sockets.iter_mut() {
                let Some(total) = bytes_received(&w.fd) else {
                    continue;
                };
                w.at = (w.at + 1) % WINDOWS;
                w.recent[w.at] = total.saturating_sub(w.received);
                w.received = total;
                *by_source.entry(peer.ip()).or_default() += w.recent.iter().sum::<u64>();
            }
            by_source.retain(|_, second| limit > 0 && *second > limit);
            if by_source.is_empty() {
                return;
            }
            s.sockets.retain(|peer, w| match by_source.get(&peer.ip()) {
                Some(second) => {
                    shut(&w.fd);
                    shut_down.push((*peer, *second));
                    false
                }
                None => true,
            });
        }
        for (peer, second) in shut_down {
            self.shut_down_total.fetch_add(1, Ordering::Relaxed);
            warn!(source = %peer, bytes = second, "SIP TCP connection shut down: its source sent more bytes in a second than [sip] max_packets_per_second_per_source × 2 KiB");
        }
    }

    /// Counts a new connection from `peer` (its socket kept, duplicated, to shut it down with
    /// `shut_down`), or says which limit it is over (counted in `refused`; with the number to
    /// log when a second has passed since the last line).
    pub fn admit(
        self: &Arc<Self>,
        peer: SocketAddr,
        socket: Option<OwnedFd>,
        now: Instant,
    ) -> Result<TcpSlot, (TcpRefusal, Option<u64>)> {
        let source = peer.ip();
        let mut s = self.lock();
        let from_source = s.by_source.get(&source).copied().unwrap_or(0);
        let over = if s.max_total > 0 && s.total >= s.max_total {
            Some(TcpRefusal::Total)
        } else if s.max_per_source > 0 && from_source >= s.max_per_source {
            Some(TcpRefusal::Source)
        } else {
            None
        };
        if let Some(why) = over {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Err((why, s.log.refused(now)));
        }
        s.total += 1;
        *s.by_source.entry(source).or_default() += 1;
        s.last_id += 1;
        let id = s.last_id;
        if let Some(fd) = socket {
            let received = bytes_received(&fd).unwrap_or(0);
            s.sockets.insert(
                peer,
                Watched {
                    id,
                    fd,
                    received,
                    recent: [0; WINDOWS],
                    at: 0,
                },
            );
        }
        Ok(TcpSlot {
            connections: self.clone(),
            peer,
            id,
        })
    }
}

/// Accepts on `listener` until `cancel`: each connection within the limits goes to
/// rsipstack with `inspector` (the RFC 3261 checks) and `message_timeout` (the longest a
/// message, or the first one after connecting, may take to arrive), which serves it until the
/// peer closes it, a message is too slow, or it is idle for rsipstack's stream idle timeout
/// (5 min), and cancels the token given to it then, which frees its slot. With `tls`, each
/// connection first completes its TLS handshake within `message_timeout` (10 s when 0), in a
/// task of its own, holding its slot meanwhile.
#[allow(clippy::too_many_arguments)]
pub async fn accept_loop(
    listener: tokio::net::TcpListener,
    local: SipAddr,
    endpoint: Arc<EndpointInner>,
    connections: Arc<TcpConnections>,
    inspector: Arc<dyn TransportInspector>,
    message_timeout: Duration,
    tls: Option<super::tls::TlsServer>,
    cancel: CancellationToken,
) {
    let mut failures = RefusalLog::default();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = cancel.cancelled() => return,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors, most likely: wait instead of spinning.
                if let Some(n) = failures.refused(Instant::now()) {
                    warn!(error = %e, failures = n, listen = %local, "cannot accept a SIP TCP connection");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // SIP messages are small and answered at once: Nagle's algorithm would hold a
        // response behind an unacknowledged write (a TLS session ticket, a 100 Trying) until
        // the peer's delayed ACK, some 40 ms.
        let _ = stream.set_nodelay(true);
        let socket = stream.as_fd().try_clone_to_owned().ok();
        let slot = match connections.admit(peer, socket, Instant::now()) {
            Ok(slot) => slot,
            Err((why, log)) => {
                if let Some(n) = log {
                    let (limit, key) = match why {
                        TcpRefusal::Total => ("all sources", "max_tcp_connections"),
                        TcpRefusal::Source => ("one source", "max_tcp_connections_per_source"),
                    };
                    warn!(source = %peer.ip(), refused = n, "SIP TCP connections closed at once: too many open from {limit} ([sip] {key})");
                }
                continue; // dropping the stream closes it
            }
        };
        let token = cancel.child_token();
        let served = Served {
            endpoint: endpoint.clone(),
            connections: connections.clone(),
            inspector: inspector.clone(),
            message_timeout,
            token,
            slot,
        };
        let Some(tls) = tls.clone() else {
            match TcpConnection::from_stream(stream, local.clone(), Some(served.token.clone())) {
                Ok(c) => served.serve(Stream::Tcp(c)),
                Err(e) => warn!(error = %e, source = %peer, "cannot serve a SIP TCP connection"),
            }
            continue;
        };
        let local = local.clone();
        tokio::spawn(async move {
            let limit = match message_timeout {
                Duration::ZERO => Duration::from_secs(10),
                t => t,
            };
            let stream = match tokio::time::timeout(limit, tls.acceptor.accept(stream)).await {
                Ok(Ok(s)) => s,
                failed => {
                    let why = match failed {
                        Ok(Err(e)) => e.to_string(),
                        _ => "not done in time".into(),
                    };
                    let failures = &served.connections.tls_failed;
                    failures.fetch_add(1, Ordering::Relaxed);
                    debug!(source = %peer, why, "SIP TLS handshake failed: closed");
                    return;
                }
            };
            let remote = SipAddr {
                r#type: Some(rsipstack::sip::transport::Transport::Tls),
                addr: peer.into(),
            };
            let mut local = local;
            local.r#type = Some(rsipstack::sip::transport::Transport::Tls);
            let token = Some(served.token.clone());
            match TlsConnection::from_server_stream(stream, local, remote, token).await {
                Ok(c) => served.serve(Stream::Tls(c)),
                Err(e) => warn!(error = %e, source = %peer, "cannot serve a SIP TLS connection"),
            }
        });
    }
}

/// A connection taken on, over TCP or TLS.
enum Stream {
    Tcp(TcpConnection),
    Tls(TlsConnection),
}

/// What serving one accepted connection needs.
struct Served {
    endpoint: Arc<EndpointInner>,
    connections: Arc<TcpConnections>,
    inspector: Arc<dyn TransportInspector>,
    message_timeout: Duration,
    /// Cancelled by rsipstack when it lets the connection go.
    token: CancellationToken,
    slot: TcpSlot,
}

impl Served {
    /// Hands the connection to rsipstack with the checks; its slot is freed (and a close for
    /// slowness counted) once rsipstack lets it go.
    fn serve(self, stream: Stream) {
        let (connection, too_slow): (SipConnection, Box<dyn Fn() -> bool + Send>) = match stream {
            Stream::Tcp(c) => {
                c.inner.set_inspector(self.inspector, self.message_timeout);
                let inner = c.inner.clone();
                (
                    SipConnection::Tcp(c),
                    Box::new(move || inner.closed_too_slow()),
                )
            }
            Stream::Tls(c) => {
                c.set_inspector(self.inspector, self.message_timeout);
                let kept = c.clone();
                (
                    SipConnection::Tls(c),
                    Box::new(move || kept.closed_too_slow()),
                )
            }
        };
        self.endpoint.transport_layer.add_connection(connection);
        let (token, counts, slot) = (self.token, self.connections, self.slot);
        tokio::spawn(async move {
            token.cancelled().await;
            if too_slow() {
                counts.too_slow_total.fetch_add(1, Ordering::Relaxed);
            }
            drop(slot);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// A source whose connections sent more bytes in the last second than the limit has them
    /// shut down; a quiet one keeps its connection.
    #[test]
    fn the_guard_shuts_down_the_connections_of_a_source_over_its_bytes() {
        let c = Arc::new(TcpConnections::default());
        c.set_limits(0, 0, 10_000);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let connect = |from: &str| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()
                .unwrap();
            let client = rt.block_on(async {
                let s = tokio::net::TcpSocket::new_v4().unwrap();
                s.bind(from.parse().unwrap()).unwrap();
                s.connect(listener.local_addr().unwrap()).await.unwrap()
            });
            let client = client.into_std().unwrap();
            client.set_nonblocking(false).unwrap();
            let (server, peer) = listener.accept().unwrap();
            let slot = c
                .admit(
                    peer,
                    server.as_fd().try_clone_to_owned().ok(),
                    Instant::now(),
                )
                .unwrap();
            (client, server, slot)
        };
        let (mut loud, mut loud_server, _slot1) = connect("127.0.0.2:0");
        let (mut quiet, mut quiet_server, _slot2) = connect("127.0.0.3:0");
        loud.write_all(&[b'x'; 20_000]).unwrap();
        quiet.write_all(&[b'x'; 500]).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        c.look();
        assert_eq!(c.shut_down_total.load(Ordering::Relaxed), 1);
        // The loud one reads its end after what was queued; the quiet one is still open.
        let mut buf = vec![0u8; 65536];
        loud_server
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let mut total = 0;
        let ended = loop {
            match loud_server.read(&mut buf) {
                Ok(0) => break true,
                Err(_) => break false,
                Ok(n) => total += n,
            }
        };
        assert!(
            ended && total <= 20_000,
            "ended {ended} after {total} bytes"
        );
        quiet_server
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        assert_eq!(quiet_server.read(&mut buf).unwrap(), 500);
        assert!(
            quiet_server.read(&mut buf).is_err(),
            "still open, nothing more"
        );
        assert_eq!(
            c.open(),
            2,
            "slots go when the SIP stack lets the connections go"
        );
    }

    #[test]
    fn connections_are_counted_by_source_against_both_limits_and_freed_when_dropped() {
        let c = Arc::new(TcpConnections::default());
        let now = Instant::now();
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let mut port = 1000;
        let mut at = |ip: IpAddr| {
            port += 1;
            SocketAddr::new(ip, port)
        };
        // No limits: any number.
        let many: Vec<_> = (0..100)
            .map(|_| c.admit(at(a), None, now).unwrap())
            .collect();
        assert_eq!(c.open(), 100);
        drop(many);
        assert_eq!(c.open(), 0);
        c.set_limits(3, 2, 0);
        let a1 = c.admit(at(a), None, now).unwrap();
        let _a2 = c.admit(at(a), None, now).unwrap();
        // The third from one source; the first refusal is logged at once, the next within
        // the second only counted.
        assert_eq!(
            c.admit(at(a), None, now).unwrap_err(),
            (TcpRefusal::Source, Some(1))
        );
        let _b1 = c.admit(at(b), None, now).unwrap();
        assert_eq!(
            c.admit(at(b), None, now).unwrap_err(),
            (TcpRefusal::Total, None)
        );
        assert_eq!(c.refused.load(Ordering::Relaxed), 2);
        // A closed connection makes room for its source again.
        drop(a1);
        assert_eq!(c.open(), 2);
        let _a3 = c.admit(at(a), None, now).unwrap();
        // A raised limit applies at once; the map forgets sources with nothing open.
        c.set_limits(0, 0, 0);
        let _b2 = c.admit(at(b), None, now).unwrap();
        drop((_a2, _a3, _b1, _b2));
        assert_eq!(c.open(), 0);
        assert!(c.lock().by_source.is_empty());
    }
}
