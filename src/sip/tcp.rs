//! SIP over TCP: agentgw accepts the connections itself, within limits, and hands each to
//! rsipstack, which parses and answers on it. rsipstack's own listener accepts without a
//! limit, and each connection costs about 72 KiB (two 64 KiB buffers) for up to its idle
//! timeout, so one peer could hold the machine's memory with idle connections
//! (`[sip] max_tcp_connections`, `max_tcp_connections_per_source`).

use super::RefusalLog;
use rsipstack::transaction::endpoint::EndpointInner;
use rsipstack::transport::tcp::TcpConnection;
use rsipstack::transport::{SipAddr, SipConnection};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// The TCP connections open, by source, against their limits; shared with the metrics.
#[derive(Debug, Default)]
pub struct TcpConnections {
    state: Mutex<TcpState>,
    /// Connections closed at once for a limit (`agentgw_tcp_connections_refused_total`).
    pub refused: AtomicU64,
}

#[derive(Debug, Default)]
struct TcpState {
    max_total: usize,
    max_per_source: usize,
    total: usize,
    by_source: HashMap<IpAddr, usize>,
    log: RefusalLog,
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
    source: IpAddr,
}

impl Drop for TcpSlot {
    fn drop(&mut self) {
        let mut s = self.connections.lock();
        s.total = s.total.saturating_sub(1);
        if let Some(n) = s.by_source.get_mut(&self.source) {
            *n -= 1;
            if *n == 0 {
                s.by_source.remove(&self.source);
            }
        }
    }
}

impl TcpConnections {
    /// Sets the limits (0: none); connections already open stay.
    pub fn set_limits(&self, max_total: usize, max_per_source: usize) {
        let mut s = self.lock();
        s.max_total = max_total;
        s.max_per_source = max_per_source;
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

    /// Counts a new connection from `source`, or says which limit it is over (counted in
    /// `refused`; with the number to log when a second has passed since the last line).
    pub fn admit(
        self: &Arc<Self>,
        source: IpAddr,
        now: Instant,
    ) -> Result<TcpSlot, (TcpRefusal, Option<u64>)> {
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
        Ok(TcpSlot {
            connections: self.clone(),
            source,
        })
    }
}

/// Accepts on `listener` until `cancel`: each connection within the limits goes to
/// rsipstack, which serves it until the peer closes it or it is idle for rsipstack's stream
/// idle timeout (5 min), and cancels the token given to it then, which frees its slot.
pub async fn accept_loop(
    listener: tokio::net::TcpListener,
    local: SipAddr,
    endpoint: Arc<EndpointInner>,
    connections: Arc<TcpConnections>,
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
        let slot = match connections.admit(peer.ip(), Instant::now()) {
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
        let connection =
            match TcpConnection::from_stream(stream, local.clone(), Some(token.clone())) {
                Ok(c) => c,
                Err(e) => {
                    warn!(error = %e, source = %peer, "cannot serve a SIP TCP connection");
                    continue;
                }
            };
        endpoint
            .transport_layer
            .add_connection(SipConnection::Tcp(connection));
        tokio::spawn(async move {
            token.cancelled().await;
            drop(slot);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_counted_by_source_against_both_limits_and_freed_when_dropped() {
        let c = Arc::new(TcpConnections::default());
        let now = Instant::now();
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        // No limits: any number.
        let many: Vec<_> = (0..100).map(|_| c.admit(a, now).unwrap()).collect();
        assert_eq!(c.open(), 100);
        drop(many);
        assert_eq!(c.open(), 0);
        c.set_limits(3, 2);
        let a1 = c.admit(a, now).unwrap();
        let _a2 = c.admit(a, now).unwrap();
        // The third from one source; the first refusal is logged at once, the next within
        // the second only counted.
        assert_eq!(c.admit(a, now).unwrap_err(), (TcpRefusal::Source, Some(1)));
        let _b1 = c.admit(b, now).unwrap();
        assert_eq!(c.admit(b, now).unwrap_err(), (TcpRefusal::Total, None));
        assert_eq!(c.refused.load(Ordering::Relaxed), 2);
        // A closed connection makes room for its source again.
        drop(a1);
        assert_eq!(c.open(), 2);
        let _a3 = c.admit(a, now).unwrap();
        // A raised limit applies at once; the map forgets sources with nothing open.
        c.set_limits(0, 0);
        let _b2 = c.admit(b, now).unwrap();
        drop((_a2, _a3, _b1, _b2));
        assert_eq!(c.open(), 0);
        assert!(c.lock().by_source.is_empty());
    }
}
