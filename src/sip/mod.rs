//! The only place that touches the SIP stack (rsipstack). Everything else sees `IncomingCall`,
//! `CallHandle` and `SipEvent`.
//!
//! Lessons built in: every server transaction is driven to its end after the final response
//! (or a 487 would never be retransmitted); every dialog is removed from the dialog layer when
//! it ends (or it leaks); every in-dialog request gets an answer; `timer` is never advertised.

/// The log filter that quiets the SIP stack's own chatter (part of `[log] filter`'s default).
/// Its transport layer only at error: it warns once at start that it cannot serve the TCP
/// listeners (agentgw accepts on them, see tcp.rs), and per connection that a peer broke.
pub const STACK_LOG_FILTER: &str = "rsipstack=warn,rsipstack::transport::transport_layer=error";

use crate::limits::{CallRate, Overload, PacketLimiter, RefusalLog, TokenBucket};
use crate::login::route::Routes as CallRoutes;
use crate::login::rules::{Network, StationFrom};
use crate::login::{CallId, Station};
use crate::media::dtmf::{info, Digit};
use crate::sdp::{self, RemoteMedia, SdpError};
use rsipstack::dialog::dialog::{DialogState, DialogStateReceiver, TransactionHandle};
use rsipstack::dialog::dialog_layer::DialogLayer;
use rsipstack::dialog::invite_dialog::InviteDialog;
use rsipstack::sip::prelude::HeadersExt;
use rsipstack::sip::{Header, Method, StatusCode};
use rsipstack::transaction::transaction::Transaction;
use rsipstack::transport::tls::TlsListenerConnection;
use rsipstack::transport::udp::UdpConnection;
use rsipstack::transport::{
    Inspection, SipAddr, SipConnection, TcpListenerConnection, TransportInspector, TransportLayer,
};
use rsipstack::EndpointBuilder;
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// Methods we answer; sent in Allow.
const ALLOW: &str = validate::ALLOW;
/// Events queued per call before the call task reads them; a peer flooding in-dialog requests
/// past it gets 503 on the excess.
const CALL_EVENT_QUEUE: usize = 32;
/// How long the call has to produce an SDP answer for a re-INVITE.
const REINVITE_ANSWER_TIMEOUT: Duration = Duration::from_secs(2);

/// Why the SIP side could not start.
#[derive(Debug, thiserror::Error)]
pub enum SipError {
    #[error("cannot listen on {listen}: {reason}")]
    Listen { listen: ListenAddr, reason: String },
}

/// Something the peer did on an established (or establishing) call.
#[derive(Debug)]
pub enum SipEvent {
    /// The ACK for our 200 arrived; its body is the SDP answer when we made the offer.
    Acked { body: Vec<u8> },
    /// A re-INVITE or UPDATE with an SDP offer (hold, unhold, new address): answer with our SDP.
    Reoffer {
        offer: Vec<u8>,
        answer: oneshot::Sender<Result<String, SdpError>>,
    },
    /// A key sent as SIP INFO.
    InfoKey(Digit),
    /// The call is over (BYE, CANCEL, or no ACK).
    Hangup,
}

/// A new call for the gateway to run.
#[derive(Debug)]
pub struct IncomingCall {
    pub call_id: CallId,
    /// The caller's station: From user@host (or what a PBX asserts); a station of this call
    /// alone when the caller's identity is withheld.
    pub station: Station,
    /// The caller's identity is withheld (RFC 3323): `station` is of this call alone.
    pub withheld: bool,
    /// Whose word the station is: a trusted network's, a phone account's, or the caller's own.
    pub caller: Caller,
    /// The INVITE came over TLS: SRTP keys may be taken and sent.
    pub over_tls: bool,
    /// `[media] srtp`, as the offer was checked against.
    pub srtp: sdp::SrtpPolicy,
    /// The user part of the Request-URI: what the caller dialed (`login`, `logout` …).
    pub dialed: String,
    /// Where the INVITE came from.
    pub source: SocketAddr,
    /// Our address as the caller reaches it: put in SDP.
    pub local_ip: IpAddr,
    /// The caller's SDP offer; `None` for a late offer (we offer in the 200).
    pub offer: Option<RemoteMedia>,
    pub handle: CallHandle,
    pub events: mpsc::Receiver<SipEvent>,
}

/// Lets the call task answer or end its call.
#[derive(Clone)]
pub struct CallHandle {
    dialog: Arc<InviteDialog>,
    /// Set once the gateway hangs up; shared with the dialog's `Route`.
    hung_up: Arc<AtomicBool>,
}

impl std::fmt::Debug for CallHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CallHandle({})", self.dialog.id())
    }
}

impl CallHandle {
    /// Answers 200 with our SDP.
    pub fn answer(&self, sdp: String) -> bool {
        let headers = vec![
            Header::ContentType("application/sdp".into()),
            Header::Allow(ALLOW.into()),
        ];
        self.dialog
            .accept(Some(headers), Some(sdp.into_bytes()))
            .is_ok()
    }

    /// Sends 180 Ringing.
    pub fn ring(&self) {
        self.dialog.ringing(None, None).ok();
    }

    /// Asks the phone whether it is still there: an OPTIONS in the dialog. False when no
    /// answer comes within a non-INVITE transaction's time (64 × T1, 32 s), or the answer says
    /// the dialog is gone (481) or timed out (408).
    pub async fn probe(&self) -> bool {
        let asked = self.dialog.request(Method::Options, None, None);
        match tokio::time::timeout(Duration::from_secs(32), asked).await {
            Ok(Ok(Some(answer))) => {
                let status = u16::from(answer.status_code);
                debug!(
                    status,
                    "the silent stay line's phone answered the OPTIONS probe"
                );
                !matches!(status, 408 | 481)
            }
            _ => {
                debug!("the silent stay line's phone did not answer the OPTIONS probe");
                false
            }
        }
    }

    /// Refuses the call before answering.
    pub fn reject(&self, code: u16) {
        self.dialog.reject(Some(StatusCode::from(code)), None).ok();
    }

    /// Hangs up with BYE, telling the peer the outcome in `X-Agentgw-Result` and as a Q.850
    /// cause in `Reason` (RFC 3326), which a PBX's dialplan reads as the hang-up cause.
    pub async fn bye(&self, outcome: &str, q850_cause: u8) {
        // From now on the caller's requests in this call get 481 (its BYE aside), also while
        // the BYE waits for its answer (up to 32 s from a phone that went away).
        self.hung_up.store(true, Ordering::Release);
        let reason = format!("Q.850;cause={q850_cause};text=\"{outcome}\"");
        let headers = vec![
            Header::Other("Reason".into(), reason),
            Header::Other("X-Agentgw-Result".into(), outcome.into()),
        ];
        if let Err(e) = self.dialog.bye_with_headers(Some(headers)).await {
            debug!(error = %e, "BYE not sent");
        }
    }
}

/// Calls in progress, shared by the SIP side (admission) and the call tasks (release).
#[derive(Debug, Clone, Default)]
pub struct CallCounter(Arc<AtomicUsize>);

impl CallCounter {
    pub fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
    fn try_acquire(&self, max: usize) -> Option<CallSlot> {
        self.0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| CallSlot(self.0.clone()))
    }
}

/// One admitted call; dropping it frees the slot.
#[derive(Debug)]
pub struct CallSlot(Arc<AtomicUsize>);

impl Drop for CallSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The messages the RFC 3261 checks refused: answered, by status, and dropped
/// (`agentgw_sip_invalid_total`).
#[derive(Debug, Default)]
pub struct InvalidCounts(Mutex<std::collections::BTreeMap<u16, u64>>);

impl InvalidCounts {
    /// Status 0: dropped unanswered.
    fn count(&self, status: u16) {
        if let Ok(mut m) = self.0.lock() {
            *m.entry(status).or_default() += 1;
        }
    }

    /// (status, count), status 0 for the dropped.
    pub fn get(&self) -> Vec<(u16, u64)> {
        self.0
            .lock()
            .map(|m| m.iter().map(|(s, n)| (*s, *n)).collect())
            .unwrap_or_default()
    }
}

/// A received message through `validate::check`, as the transport layer acts on it; what is
/// answered or dropped is counted and logged at debug.
fn inspect(
    raw: &[u8],
    source: SocketAddr,
    max_bytes: usize,
    stream: bool,
    counts: &InvalidCounts,
) -> Inspection {
    // The checks run inside the SIP stack's receive loop: a bug of theirs must cost one
    // message, never the listener.
    let verdict = std::panic::catch_unwind(|| validate::check(raw, max_bytes, stream))
        .unwrap_or_else(|_| {
            tracing::error!(%source, "the SIP checks failed on a message (a bug): dropped");
            validate::Verdict::Drop("the checks failed")
        });
    match verdict {
        validate::Verdict::Pass => Inspection::Pass,
        validate::Verdict::Rewrite(bytes) => Inspection::Replace(bytes),
        validate::Verdict::Answer { status, answer } => {
            counts.count(status);
            debug!(%source, status, answer = %String::from_utf8_lossy(&answer).lines().next().unwrap_or_default(), "invalid SIP request answered");
            Inspection::Reply(answer)
        }
        validate::Verdict::Drop(why) => {
            counts.count(0);
            debug!(%source, why, "SIP message dropped");
            Inspection::Drop
        }
    }
}

/// Settings the SIP side needs.
#[derive(Debug, Clone)]
pub struct SipSettings {
    pub listen: Vec<ListenAddr>,
    /// Bytes asked for each UDP socket's receive buffer (0: the kernel's default).
    pub udp_receive_buffer: usize,
    /// Longer SIP messages are answered 513.
    pub max_message_bytes: usize,
    /// What the RFC 3261 checks refused.
    pub invalid: Arc<InvalidCounts>,
    /// The longest a message over TCP may take to arrive, from its first byte (or, the first
    /// one, from the connection); zero: no limit.
    pub tcp_message_timeout: Duration,
    pub max_calls: usize,
    /// New calls per second at most (0: no limit).
    pub max_calls_per_second: u32,
    /// Refuse new calls while this says the gateway is behind (`refuse_when_overloaded`).
    pub overload: Option<Arc<Overload>>,
    /// The TCP connections open, with their limits set.
    pub tcp: Arc<TcpConnections>,
    /// SIP datagrams per second per source, with its rate set.
    pub packets: Arc<PacketLimiter>,
    pub public_address: Option<IpAddr>,
    /// Where the caller's station is read, and the header for `StationFrom::Header`.
    pub station_from: StationFrom,
    pub station_header: String,
    /// Where PBXs and proxies send from: their calls are taken without authentication and
    /// their asserted station (PAI, the station header) is believed.
    pub trusted: Vec<Network>,
    /// How callers from elsewhere authenticate.
    pub auth: AuthSettings,
    /// The certificate of the TLS listeners (needed by any).
    pub tls: Option<TlsServer>,
    /// The tenants' routing as read at start: the `[media] srtp` of the number dialed (offers
    /// it refuses get 488 before a call is set up).
    pub call_routes: CallRoutes,
}

/// The running SIP side.
pub struct SipServer {
    /// Where we listen, with the ports actually bound.
    pub listening: Vec<ListenAddr>,
    pub calls: CallCounter,
    /// Kept to count open dialogs (a leak shows here first).
    dialogs: Arc<DialogLayer>,
    /// Set when the gateway drains: new calls and keepalives get 503 so PBXs fail over.
    draining: Arc<AtomicBool>,
    cancel: CancellationToken,
}

impl SipServer {
    /// Binds the listeners and starts serving; new calls arrive on the returned channel with
    /// their admission slot.
    pub async fn start(
        settings: SipSettings,
    ) -> Result<(SipServer, mpsc::Receiver<(IncomingCall, CallSlot)>), SipError> {
        let cancel = CancellationToken::new();
        let transport_layer = TransportLayer::new(cancel.child_token());
        // Every UDP datagram passes here before it is parsed.
        let packets = settings.packets.clone();
        transport_layer.set_whitelist(move |ip: IpAddr| {
            let ok = packets.allow(ip, std::time::Instant::now());
            async move { ok }
        });
        // ... and then the checks of RFC 3261 (validate.rs), before the stack parses it.
        let checks = |stream: bool| {
            let (max_message, invalid) = (settings.max_message_bytes, settings.invalid.clone());
            move |raw: &[u8], source: SocketAddr, _| {
                inspect(raw, source, max_message, stream, &invalid)
            }
        };
        transport_layer.set_inspector(checks(false));
        let stream_checks: Arc<dyn TransportInspector> = Arc::new(checks(true));
        let mut listening = Vec::new();
        let mut tcp_listeners: Vec<(tokio::net::TcpListener, SipAddr, Option<TlsServer>)> =
            Vec::new();
        for l in &settings.listen {
            let fail = |reason: String| SipError::Listen { listen: *l, reason };
            match l.transport {
                Transport::Udp => {
                    let socket = udp_socket(l.addr, settings.udp_receive_buffer)
                        .map_err(|e| fail(e.to_string()))?;
                    let conn = UdpConnection::from_socket(
                        Arc::new(socket),
                        None,
                        Some(cancel.child_token()),
                    )
                    .await
                    .map_err(|e| fail(e.to_string()))?;
                    let port = conn
                        .get_addr()
                        .get_socketaddr()
                        .map(|a| a.port())
                        .unwrap_or(l.addr.port());
                    listening.push(ListenAddr {
                        transport: Transport::Udp,
                        addr: SocketAddr::new(l.addr.ip(), port),
                    });
                    transport_layer.add_transport(conn.into());
                }
                Transport::Tcp | Transport::Tls => {
                    // agentgw accepts (within its limits, see tcp.rs) and hands each
                    // connection to rsipstack. rsipstack still needs a listener of this
                    // address and transport for the Via of requests it sends in TCP and TLS
                    // dialogs, registered as accepted elsewhere: it binds nothing.
                    let tls = match l.transport {
                        Transport::Tls => Some(settings.tls.clone().ok_or_else(|| {
                            fail(
                                "a TLS listener needs [sip] tls_certificate and tls_private_key"
                                    .into(),
                            )
                        })?),
                        _ => None,
                    };
                    let std_listener =
                        std::net::TcpListener::bind(l.addr).map_err(|e| fail(e.to_string()))?;
                    let listener = std_listener
                        .set_nonblocking(true)
                        .and_then(|()| tokio::net::TcpListener::from_std(std_listener))
                        .map_err(|e| fail(e.to_string()))?;
                    let addr = listener.local_addr().map_err(|e| fail(e.to_string()))?;
                    let conn = match l.transport {
                        Transport::Tls => SipConnection::TlsListener(
                            TlsListenerConnection::new(addr, None, Default::default())
                                .await
                                .map_err(|e| fail(e.to_string()))?
                                .accepted_elsewhere(),
                        ),
                        _ => SipConnection::TcpListener(
                            TcpListenerConnection::new(addr, None)
                                .await
                                .map_err(|e| fail(e.to_string()))?
                                .accepted_elsewhere(),
                        ),
                    };
                    let local = conn.get_addr().clone();
                    transport_layer.add_transport(conn);
                    tcp_listeners.push((listener, local, tls));
                    listening.push(ListenAddr {
                        transport: l.transport,
                        addr,
                    });
                }
            }
        }
        let endpoint = EndpointBuilder::new()
            .with_cancel_token(cancel.child_token())
            .with_transport_layer(transport_layer)
            .with_user_agent(concat!("agentgw/", env!("CARGO_PKG_VERSION")))
            .with_allows(vec![
                Method::Invite,
                Method::Ack,
                Method::Bye,
                Method::Cancel,
                Method::Options,
                Method::Info,
            ])
            .build();
        let incoming = endpoint
            .incoming_transactions()
            .map_err(|e| SipError::Listen {
                listen: settings.listen[0],
                reason: e.to_string(),
            })?;
        let dialogs = Arc::new(DialogLayer::new(endpoint.inner.clone()));
        let (state_tx, state_rx) = dialogs.new_dialog_state_channel();
        let routes: Routes = Arc::default();
        let (calls_tx, calls_rx) = mpsc::channel(settings.max_calls.min(4096));
        let calls = CallCounter::default();

        let serve_cancel = cancel.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = endpoint.serve() => {}
                _ = serve_cancel.cancelled() => {}
            }
            endpoint.shutdown();
        });
        if !tcp_listeners.is_empty() {
            if let Err(e) = settings.tcp.clone().guard(cancel.child_token()) {
                warn!(error = %e, "cannot start the SIP TCP guard thread: connections are not watched for floods");
            }
        }
        for (listener, local, tls) in tcp_listeners {
            tokio::spawn(tcp::accept_loop(
                listener,
                local,
                dialogs.endpoint.clone(),
                settings.tcp.clone(),
                stream_checks.clone(),
                settings.tcp_message_timeout,
                tls,
                cancel.child_token(),
            ));
        }
        tokio::spawn(route_dialog_states(
            state_rx,
            dialogs.clone(),
            routes.clone(),
        ));
        let mut settings = settings;
        settings.listen = listening.clone();
        let draining = Arc::new(AtomicBool::new(false));
        let acceptor = Acceptor {
            draining: draining.clone(),
            dialogs: dialogs.clone(),
            state_tx,
            routes,
            calls_tx,
            calls: calls.clone(),
            admission: Mutex::new(Admission {
                rate: CallRate::new(settings.max_calls_per_second, std::time::Instant::now()),
                overloaded: RefusalLog::default(),
                at_max_calls: RefusalLog::default(),
                in_call_requests: RefusalLog::default(),
                before_ack: RefusalLog::default(),
            }),
            settings,
        };
        tokio::spawn(Arc::new(acceptor).run(incoming, cancel.clone()));
        Ok((
            SipServer {
                listening,
                calls,
                dialogs,
                draining,
                cancel,
            },
            calls_rx,
        ))
    }

    /// Refuses new calls (INVITE and OPTIONS get 503 with Retry-After) from now on; calls
    /// in progress go on.
    pub fn drain(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// The drain flag, to read from elsewhere (`/readyz`).
    pub fn draining_flag(&self) -> Arc<AtomicBool> {
        self.draining.clone()
    }

    /// Dialogs the SIP stack holds open.
    pub fn open_dialogs(&self) -> usize {
        self.dialogs.len()
    }

    /// Stops listening.
    pub fn shutdown(&self) {
        self.cancel.cancel();
    }
}

impl Drop for SipServer {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

mod accept;
mod auth;
mod dialog;
mod listen;
mod reply;
mod routes;
mod station;
mod tcp;
mod tls;
mod udp;
pub mod validate;
pub use auth::{AuthSettings, Caller, PhoneAccounts};
pub use listen::{ListenAddr, Transport};
pub use routes::{
    MAX_REQUESTS_BEFORE_ACK, MAX_REQUESTS_BEFORE_ACK_IN_ALL, MAX_REQUESTS_PER_SECOND_PER_CALL,
};
pub use tcp::TcpConnections;
pub use tls::{TlsFiles, TlsServer};

#[cfg(test)]
#[path = "sip_tests.rs"]
mod tests;
use accept::*;
use dialog::*;
use reply::*;
use routes::*;
use station::*;
use udp::*;
