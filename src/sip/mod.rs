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
use crate::login::rules::StationFrom;
use crate::media::dtmf::{info, Digit};
use crate::sdp::{self, RemoteMedia, SdpError};
use rsipstack::dialog::dialog::{DialogState, DialogStateReceiver, TransactionHandle};
use rsipstack::dialog::dialog_layer::DialogLayer;
use rsipstack::dialog::invite_dialog::InviteDialog;
use rsipstack::sip::prelude::HeadersExt;
use rsipstack::sip::{Header, Method, StatusCode};
use rsipstack::transaction::transaction::Transaction;
use rsipstack::transport::udp::UdpConnection;
use rsipstack::transport::{SipAddr, SipConnection, TcpListenerConnection, TransportLayer};
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
const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO";
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
    pub call_id: String,
    /// The caller's station: From user@host.
    pub station: String,
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

    /// Refuses the call before answering.
    pub fn reject(&self, code: u16) {
        self.dialog.reject(Some(StatusCode::from(code)), None).ok();
    }

    /// Hangs up with BYE, telling the peer the outcome in `X-Agentgw-Result`.
    pub async fn bye(&self, outcome: &str) {
        // From now on the caller's requests in this call get 481 (its BYE aside), also while
        // the BYE waits for its answer (up to 32 s from a phone that went away).
        self.hung_up.store(true, Ordering::Release);
        let headers = vec![Header::Other("X-Agentgw-Result".into(), outcome.into())];
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

/// Settings the SIP side needs.
#[derive(Debug, Clone)]
pub struct SipSettings {
    pub listen: Vec<ListenAddr>,
    /// Bytes asked for each UDP socket's receive buffer (0: the kernel's default).
    pub udp_receive_buffer: usize,
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
        let mut listening = Vec::new();
        let mut tcp_listeners: Vec<(tokio::net::TcpListener, SipAddr)> = Vec::new();
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
                Transport::Tcp => {
                    // agentgw accepts (within its limits, see tcp.rs) and hands each
                    // connection to rsipstack. rsipstack still needs a TCP listener of
                    // this address for the Via of requests it sends in TCP dialogs; when
                    // it tries to serve that one, the bind fails (this socket has the
                    // port), so nothing else accepts here.
                    let std_listener =
                        std::net::TcpListener::bind(l.addr).map_err(|e| fail(e.to_string()))?;
                    let listener = std_listener
                        .set_nonblocking(true)
                        .and_then(|()| tokio::net::TcpListener::from_std(std_listener))
                        .map_err(|e| fail(e.to_string()))?;
                    let addr = listener.local_addr().map_err(|e| fail(e.to_string()))?;
                    let conn = TcpListenerConnection::new(addr, None)
                        .await
                        .map_err(|e| fail(e.to_string()))?;
                    let local = conn.get_addr().clone();
                    transport_layer.add_transport(SipConnection::TcpListener(conn));
                    tcp_listeners.push((listener, local));
                    listening.push(ListenAddr {
                        transport: Transport::Tcp,
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
        for (listener, local) in tcp_listeners {
            tokio::spawn(tcp::accept_loop(
                listener,
                local,
                dialogs.endpoint.clone(),
                settings.tcp.clone(),
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
        tokio::spawn(acceptor.run(incoming, cancel.clone()));
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

/// Dialog id → its call's route.
type Routes = Arc<Mutex<RouteTable>>;

#[derive(Default)]
struct RouteTable {
    calls: HashMap<String, Route>,
    /// Requests waiting for their call's ACK, in all calls (`MAX_REQUESTS_BEFORE_ACK_IN_ALL`).
    before_ack: usize,
}

/// Where a dialog's events go, and its budget of requests from the caller.
struct Route {
    events: mpsc::Sender<SipEvent>,
    requests: TokenBucket,
    /// The gateway has hung up (`CallHandle::bye`).
    hung_up: Arc<AtomicBool>,
    /// A re-INVITE from the caller is being handled (until its ACK; `ReinviteGuard`).
    reinvite: Arc<AtomicBool>,
    /// Requests from the caller that came before its ACK, in order, at most
    /// `MAX_REQUESTS_BEFORE_ACK`; handed to the dialog once it is confirmed.
    before_ack: VecDeque<Transaction>,
    /// `before_ack` is being handed on: later requests queue behind it, so none overtakes.
    handing_on: bool,
}

impl Route {
    fn new(events: mpsc::Sender<SipEvent>, hung_up: Arc<AtomicBool>) -> Route {
        Route {
            events,
            requests: TokenBucket::full(
                MAX_REQUESTS_PER_SECOND_PER_CALL,
                std::time::Instant::now(),
            ),
            hung_up,
            reinvite: Arc::default(),
            before_ack: VecDeque::new(),
            handing_on: false,
        }
    }
}

/// Requests a caller may send in its call between the gateway's 200 and the caller's ACK
/// that wait for the ACK (the dialog is confirmed for the caller once it has the 200, RFC
/// 3261 §12.1.1, but the SIP stack leaves requests in a dialog it has not seen ACKed
/// unanswered). Enough for an agent number and a passcode keyed as INFO, each with its `#`.
pub const MAX_REQUESTS_BEFORE_ACK: usize = 20;

/// Requests waiting for an ACK in all calls at once. Each holds its transaction, ~12 KiB
/// (20,000 of them, 20 in each of 1,000 calls never ACKed, took the gateway from 17 to
/// 259 MB): without it, `max_calls` calls that never ACK could hold 20 each.
pub const MAX_REQUESTS_BEFORE_ACK_IN_ALL: usize = 1000;

/// Requests a second a caller may send inside its call (a second's worth at once), BYE
/// aside. A phone sends a few: an INFO or two per key, a session refresh, a hold; a dialer
/// keying fast, 20 a second. Each request answered is kept by the SIP stack for 32 s
/// (~1.4 KiB): 5,000 INFOs a second in one call, what the per-source limit lets through,
/// took the gateway from 17 to 221 MB in 30 s.
pub const MAX_REQUESTS_PER_SECOND_PER_CALL: u32 = 50;

fn route(routes: &Routes, id: &str) -> Option<mpsc::Sender<SipEvent>> {
    routes
        .lock()
        .ok()
        .and_then(|r| r.calls.get(id).map(|r| r.events.clone()))
}

/// What becomes of a request from the caller inside its call, before its dialog sees it.
enum InCall {
    /// On to the dialog; for a routed call, its re-INVITE flag.
    Go(Option<Arc<AtomicBool>>),
    /// Over `MAX_REQUESTS_PER_SECOND_PER_CALL`.
    OverBudget,
    /// The gateway has hung up the call.
    HungUp,
}

/// What `hold_for_ack` did with a request in a call.
enum Held {
    /// The call is confirmed and nothing waits before it: on to the dialog.
    No(Transaction),
    /// Queued until the caller's ACK.
    Yes,
    /// `MAX_REQUESTS_BEFORE_ACK` already wait.
    Full(Transaction),
}

/// Queues a request for dialog `id` that came before the caller's ACK (or after it while the
/// ones that came before wait or are being handed on, so it does not overtake them). Decided
/// under the routes lock, which `hand_on_before_ack` takes after the dialog is confirmed:
/// none is left behind.
fn hold_for_ack(routes: &Routes, id: &str, dialog: &InviteDialog, tx: Transaction) -> Held {
    let mut guard = routes.lock().unwrap_or_else(|p| p.into_inner());
    let table = &mut *guard;
    let Some(route) = table.calls.get_mut(id) else {
        return Held::No(tx);
    };
    // Confirmed with nothing waiting: nothing to overtake. A request that comes after the
    // ACK but before the waiting ones are handed on queues behind them.
    if !route.handing_on && route.before_ack.is_empty() {
        let state = dialog.state();
        if state.is_confirmed() || state.is_terminated() {
            return Held::No(tx);
        }
    }
    if route.before_ack.len() >= MAX_REQUESTS_BEFORE_ACK
        || table.before_ack >= MAX_REQUESTS_BEFORE_ACK_IN_ALL
    {
        return Held::Full(tx);
    }
    route.before_ack.push_back(tx);
    table.before_ack += 1;
    Held::Yes
}

/// Once dialog `id` is confirmed, hands the requests that waited for its ACK to the dialog,
/// one after the other in the order they came (each INFO's key reaches the call before the
/// next is handled), then lets later requests through again.
fn hand_on_before_ack(routes: &Routes, id: &str, dialog: InviteDialog) {
    {
        let mut r = routes.lock().unwrap_or_else(|p| p.into_inner());
        let Some(route) = r.calls.get_mut(id) else {
            return;
        };
        if route.handing_on || route.before_ack.is_empty() {
            return;
        }
        route.handing_on = true;
    }
    let routes = routes.clone();
    let id = id.to_string();
    let mut dialog = dialog;
    tokio::spawn(async move {
        loop {
            let next = {
                let mut guard = routes.lock().unwrap_or_else(|p| p.into_inner());
                let table = &mut *guard;
                let Some(route) = table.calls.get_mut(&id) else {
                    break;
                };
                let next = route.before_ack.pop_front();
                route.handing_on = next.is_some();
                table.before_ack -= usize::from(next.is_some());
                next
            };
            let Some(mut tx) = next else { break };
            if let Err(e) = dialog.handle(&mut tx).await {
                debug!(error = %e, "in-dialog request failed");
            }
            answer_if_unanswered(&mut tx, StatusCode::ServerInternalError).await;
            tokio::spawn(drain(tx));
        }
    });
}

/// Checks a request for dialog `id` against the call's state and budget; a dialog not (or no
/// longer) routed goes on to the dialog layer.
fn in_call(routes: &Routes, id: &str, now: std::time::Instant) -> InCall {
    let mut r = routes.lock().unwrap_or_else(|p| p.into_inner());
    let Some(r) = r.calls.get_mut(id) else {
        return InCall::Go(None);
    };
    if r.hung_up.load(Ordering::Acquire) {
        InCall::HungUp
    } else if r.requests.take(MAX_REQUESTS_PER_SECOND_PER_CALL, now) {
        InCall::Go(Some(r.reinvite.clone()))
    } else {
        InCall::OverBudget
    }
}

struct Acceptor {
    /// New calls are refused while the gateway drains.
    draining: Arc<AtomicBool>,
    dialogs: Arc<DialogLayer>,
    state_tx: rsipstack::dialog::dialog::DialogStateSender,
    routes: Routes,
    calls_tx: mpsc::Sender<(IncomingCall, CallSlot)>,
    calls: CallCounter,
    settings: SipSettings,
    admission: Mutex<Admission>,
}

/// A call's `Route::reinvite` flag held while its re-INVITE is handled.
struct ReinviteGuard(Arc<AtomicBool>);

impl ReinviteGuard {
    /// Raises the flag, or None while another re-INVITE of the call is being handled.
    fn take(flag: Arc<AtomicBool>) -> Option<Self> {
        // Not `then_some(ReinviteGuard(flag))`: that builds the guard either way, and its drop
        // would lower the flag another re-INVITE holds.
        if flag.swap(true, Ordering::AcqRel) {
            None
        } else {
            Some(ReinviteGuard(flag))
        }
    }
}

impl Drop for ReinviteGuard {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// What decides whether a new call is refused at once: the rate, and the refusals for
/// overload still to log.
#[derive(Debug)]
struct Admission {
    rate: CallRate,
    overloaded: RefusalLog,
    at_max_calls: RefusalLog,
    /// Requests in calls refused for `MAX_REQUESTS_PER_SECOND_PER_CALL`.
    in_call_requests: RefusalLog,
    /// Requests in calls refused for `MAX_REQUESTS_BEFORE_ACK` (`_IN_ALL`).
    before_ack: RefusalLog,
}

impl Acceptor {
    /// Whether a new call at `now` is refused at once, and the Retry-After to give: the
    /// media threads are behind (`refuse_when_overloaded`), or it is over
    /// `max_calls_per_second`. Each kind is logged once a second with its count.
    fn refusal(&self, now: std::time::Instant) -> Option<&'static str> {
        let mut admission = match self.admission.lock() {
            Ok(a) => a,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(overload) = self.settings.overload.as_ref().filter(|o| o.active(now)) {
            overload.refused.fetch_add(1, Ordering::Relaxed);
            if let Some(n) = admission.overloaded.refused(now) {
                warn!(
                    refused = n,
                    "calls refused: the media threads are behind their 20 ms schedule (503, Retry-After: 2; refuse_when_overloaded)"
                );
            }
            return Some("2");
        }
        let log = admission.rate.admit(now).err()?;
        if let Some(n) = log {
            warn!(
                refused = n,
                max_calls_per_second = self.settings.max_calls_per_second,
                "calls refused: over max_calls_per_second (503, Retry-After: 1)"
            );
        }
        Some("1")
    }

    async fn run(
        self,
        mut incoming: rsipstack::transaction::TransactionReceiver,
        cancel: CancellationToken,
    ) {
        loop {
            let tx = tokio::select! {
                tx = incoming.recv() => tx,
                _ = cancel.cancelled() => None,
            };
            let Some(tx) = tx else { break };
            self.on_transaction(tx).await;
        }
    }

    async fn on_transaction(&self, mut tx: Transaction) {
        // A request over TCP did not pass the datagram check (`max_packets_per_second_per_source`):
        // it is counted here. Over the budget the connection is shut down, as its messages
        // cannot be dropped before the SIP stack has read and parsed them (it reads a TCP
        // connection as fast as it can, into an unbounded queue: an INVITE flood on one
        // connection took the gateway past 12 GB), and the request is dropped unanswered.
        if tx
            .connection
            .as_ref()
            .is_some_and(|c| matches!(c, SipConnection::Tcp(_)))
        {
            if let Some(source) = source_of(&tx) {
                if !self
                    .settings
                    .packets
                    .allow(source.ip(), std::time::Instant::now())
                {
                    if self.settings.tcp.shut_down(source) {
                        warn!(%source, "SIP TCP connection shut down: its source sent more than [sip] max_packets_per_second_per_source");
                    }
                    return;
                }
            }
        }
        let in_dialog = tx
            .original
            .to_header()
            .ok()
            .and_then(|t| t.tag().ok().flatten())
            .is_some();
        let method = tx.original.method;
        if in_dialog {
            match self.dialogs.match_dialog(&tx) {
                Some(rsipstack::dialog::dialog::Dialog::Invite(mut dialog)) => {
                    // The caller's budget (`MAX_REQUESTS_PER_SECOND_PER_CALL`), BYE aside:
                    // past it a stateless 503.
                    let now = std::time::Instant::now();
                    let key = dialog.id().to_string();
                    let check = if method == Method::Bye {
                        InCall::Go(None)
                    } else {
                        in_call(&self.routes, &key, now)
                    };
                    let reinvite_flag = match check {
                        InCall::Go(flag) => flag,
                        InCall::HungUp => {
                            spawn_reply(tx, StatusCode::CallTransactionDoesNotExist, vec![]);
                            return;
                        }
                        InCall::OverBudget => {
                            let log = match self.admission.lock() {
                                Ok(mut a) => a.in_call_requests.refused(now),
                                Err(_) => None,
                            };
                            if let Some(refused) = log {
                                warn!(source = ?source_of(&tx), %method, refused, max = MAX_REQUESTS_PER_SECOND_PER_CALL, "requests in a call refused: over the per-call rate (503; one line a second at most)");
                            }
                            spawn_reply(
                                tx,
                                StatusCode::ServiceUnavailable,
                                vec![Header::RetryAfter("1".into())],
                            );
                            return;
                        }
                    };
                    // A request that came before the caller's ACK waits for it, in order (a re-INVITE
                    // too: the SIP stack would leave it unanswered).
                    if !matches!(
                        method,
                        Method::Ack | Method::Bye | Method::Cancel | Method::PRack
                    ) {
                        match hold_for_ack(&self.routes, &key, &dialog, tx) {
                            Held::No(t) => tx = t,
                            Held::Yes => return,
                            Held::Full(t) => {
                                let log = match self.admission.lock() {
                                    Ok(mut a) => a.before_ack.refused(now),
                                    Err(_) => None,
                                };
                                if let Some(refused) = log {
                                    warn!(source = ?source_of(&t), %method, refused, max = MAX_REQUESTS_BEFORE_ACK, max_in_all = MAX_REQUESTS_BEFORE_ACK_IN_ALL, "requests in calls refused: too many wait for an ACK (500; one line a second at most)");
                                }
                                spawn_reply(
                                    t,
                                    StatusCode::ServerInternalError,
                                    vec![Header::RetryAfter("1".into())],
                                );
                                return;
                            }
                        }
                    }
                    // One re-INVITE at a time per call, until its ACK (the dialog's handling
                    // waits for it): the next gets 500 with Retry-After 0-10 s (RFC 3261
                    // §14.2), statelessly. Each re-INVITE taken on holds a transaction and
                    // its 2xx retransmissions for up to 32 s without an ACK: a caller
                    // sending 2,000 a second without ACKs took the gateway to 459 MB.
                    let guard = reinvite_flag
                        .filter(|_| method == Method::Invite)
                        .map(ReinviteGuard::take);
                    if let Some(None) = guard {
                        let after = rand::random::<u8>() % 11;
                        spawn_reply(
                            tx,
                            StatusCode::ServerInternalError,
                            vec![Header::RetryAfter(after.to_string().into())],
                        );
                        return;
                    }
                    tokio::spawn(async move {
                        if let Err(e) = dialog.handle(&mut tx).await {
                            debug!(error = %e, %method, "in-dialog request failed");
                        }
                        drop(guard.flatten());
                        answer_if_unanswered(&mut tx, StatusCode::ServerInternalError).await;
                        drain(tx).await;
                    });
                }
                _ => spawn_reply(tx, StatusCode::CallTransactionDoesNotExist, vec![]),
            }
            return;
        }
        if self.draining.load(Ordering::Acquire)
            && matches!(method, Method::Invite | Method::Options)
        {
            spawn_reply(
                tx,
                StatusCode::ServiceUnavailable,
                vec![Header::RetryAfter("30".into())],
            );
            return;
        }
        match method {
            Method::Invite => self.on_invite(tx).await,
            Method::Options => spawn_reply(
                tx,
                StatusCode::OK,
                vec![
                    Header::Allow(ALLOW.into()),
                    Header::Accept("application/sdp".into()),
                    Header::Other("Accept-Language".into(), "en".into()),
                ],
            ),
            Method::Bye | Method::Info | Method::Update | Method::PRack => {
                spawn_reply(tx, StatusCode::CallTransactionDoesNotExist, vec![])
            }
            Method::Ack | Method::Cancel => {}
            _ => spawn_reply(
                tx,
                StatusCode::MethodNotAllowed,
                vec![Header::Allow(ALLOW.into())],
            ),
        }
    }

    async fn on_invite(&self, tx: Transaction) {
        let Some(source) = source_of(&tx) else {
            spawn_reply(tx, StatusCode::BadRequest, vec![]);
            return;
        };
        let call_id = tx
            .original
            .call_id_header()
            .map(|c| c.value().to_string())
            .unwrap_or_default();
        if let Some(retry_after) = self.refusal(std::time::Instant::now()) {
            spawn_reply(
                tx,
                StatusCode::ServiceUnavailable,
                vec![Header::RetryAfter(retry_after.into())],
            );
            return;
        }
        let Some(slot) = self.calls.try_acquire(self.settings.max_calls) else {
            let log = match self.admission.lock() {
                Ok(mut a) => a.at_max_calls.refused(std::time::Instant::now()),
                Err(_) => None,
            };
            if let Some(refused) = log {
                warn!(%call_id, %source, max_calls = self.settings.max_calls, refused, "calls refused: at max_calls (one line a second at most)");
            }
            spawn_reply(
                tx,
                StatusCode::ServiceUnavailable,
                vec![Header::RetryAfter("5".into())],
            );
            return;
        };
        let body = tx.original.body().clone();
        let offer = if body.iter().all(u8::is_ascii_whitespace) {
            None
        } else {
            match sdp::parse(&body) {
                Ok(m) => Some(m),
                Err(e) => {
                    let code = match e {
                        SdpError::Malformed(_) => StatusCode::BadRequest,
                        SdpError::NoCommonCodec => StatusCode::NotAcceptableHere,
                    };
                    info!(%call_id, %source, reason = %e, "INVITE refused: {}", u16::from(code.clone()));
                    spawn_reply(tx, code, vec![warning(&e.to_string())]);
                    return;
                }
            }
        };
        let station = self.station_of(&tx);
        let dialed = tx
            .original
            .uri
            .auth
            .as_ref()
            .map(|a| a.user.chars().take(MAX_STATION_CHARS).collect())
            .unwrap_or_default();
        let local_ip = self
            .settings
            .public_address
            .unwrap_or_else(|| local_ip_towards(&self.settings.listen, &tx, source));
        let contact = contact_uri(&tx, local_ip);
        let dialog = match self.dialogs.get_or_create_server_invite(
            &tx,
            self.state_tx.clone(),
            None,
            contact,
        ) {
            Ok(d) => d,
            Err(e) => {
                warn!(%call_id, error = %e, "cannot create dialog");
                spawn_reply(tx, StatusCode::ServerInternalError, vec![]);
                return;
            }
        };
        let dialog_id = dialog.id();
        let (events_tx, events_rx) = mpsc::channel(CALL_EVENT_QUEUE);
        let hung_up = Arc::new(AtomicBool::new(false));
        if let Ok(mut r) = self.routes.lock() {
            r.calls.insert(
                dialog_id.to_string(),
                Route::new(events_tx, hung_up.clone()),
            );
        }
        let call = IncomingCall {
            call_id,
            station,
            dialed,
            source,
            local_ip,
            offer,
            handle: CallHandle {
                dialog: Arc::new(dialog.clone()),
                hung_up,
            },
            events: events_rx,
        };
        // Drive the INVITE transaction: 100 Trying, our final response, ACK or CANCEL, and
        // retransmissions until the transaction ends.
        let dialogs = self.dialogs.clone();
        let routes = self.routes.clone();
        let mut dialog = dialog;
        let mut tx = tx;
        tokio::spawn(async move {
            if let Err(e) = dialog.handle(&mut tx).await {
                debug!(error = %e, "INVITE transaction ended with an error");
            }
            drain(tx).await;
            // A dialog that never got confirmed (CANCEL, no ACK, rejected) ends here.
            if !dialog.state().is_confirmed() {
                end_dialog(&dialogs, &routes, &dialog.id().to_string(), &dialog.id()).await;
            }
        });
        if self.calls_tx.send((call, slot)).await.is_err() {
            warn!("gateway is not accepting calls");
        }
    }
}

/// Removes a dialog and tells its call it is over.
async fn end_dialog(
    dialogs: &DialogLayer,
    routes: &Routes,
    key: &str,
    id: &rsipstack::dialog::DialogId,
) {
    dialogs.remove_dialog(id);
    let route = routes.lock().ok().and_then(|mut r| {
        let route = r.calls.remove(key)?;
        r.before_ack -= route.before_ack.len();
        Some(route)
    });
    if let Some(route) = route {
        // Requests still waiting for an ACK that will not come: the call is gone.
        for tx in route.before_ack {
            spawn_reply(tx, StatusCode::CallTransactionDoesNotExist, vec![]);
        }
        route.events.send(SipEvent::Hangup).await.ok();
    }
}

/// Turns dialog state changes into `SipEvent`s for the call that owns the dialog, and answers
/// every in-dialog request the dialog layer hands up.
async fn route_dialog_states(
    mut states: DialogStateReceiver,
    dialogs: Arc<DialogLayer>,
    routes: Routes,
) {
    while let Some(state) = states.recv().await {
        match state {
            DialogState::Confirmed(id, _) => {
                let key = id.to_string();
                let dialog = match dialogs.get_dialog(&id) {
                    Some(rsipstack::dialog::dialog::Dialog::Invite(d)) => Some(d),
                    _ => None,
                };
                let ack_body = dialog
                    .as_ref()
                    .and_then(|d| d.last_remote_ack())
                    .map(|a| a.body().clone())
                    .unwrap_or_default();
                if let Some(s) = route(&routes, &key) {
                    s.try_send(SipEvent::Acked { body: ack_body }).ok();
                }
                if let Some(d) = dialog {
                    hand_on_before_ack(&routes, &key, d);
                }
            }
            DialogState::Updated(id, req, handle) => {
                let sender = route(&routes, &id.to_string());
                tokio::spawn(answer_reoffer(sender, req.body().clone(), handle));
            }
            DialogState::Info(id, req, handle) => {
                let sender = route(&routes, &id.to_string());
                let content_type = req.header_value("Content-Type");
                tokio::spawn(answer_info(
                    sender,
                    content_type,
                    req.body().clone(),
                    handle,
                ));
            }
            DialogState::Options(_, _, handle) => {
                tokio::spawn(async move { handle.reply(StatusCode::OK).await.ok() });
            }
            DialogState::Refer(_, _, handle)
            | DialogState::Message(_, _, handle)
            | DialogState::Notify(_, _, handle)
            | DialogState::Publish(_, _, handle) => {
                tokio::spawn(async move {
                    handle
                        .respond(
                            StatusCode::MethodNotAllowed,
                            Some(vec![Header::Allow(ALLOW.into())]),
                            None,
                        )
                        .await
                        .ok()
                });
            }
            DialogState::Terminated(id, reason) => {
                debug!(dialog = %id, ?reason, "dialog terminated");
                end_dialog(&dialogs, &routes, &id.to_string(), &id).await;
            }
            DialogState::Calling(_)
            | DialogState::Trying(_)
            | DialogState::Early(_, _)
            | DialogState::WaitAck(_, _) => {}
        }
    }
}

/// Hands a key sent as INFO to its call and answers: 200, 415 for a type that is not DTMF,
/// 400 for a DTMF body without a key.
async fn answer_info(
    sender: Option<mpsc::Sender<SipEvent>>,
    content_type: Option<String>,
    body: Vec<u8>,
    handle: TransactionHandle,
) {
    match info::parse(content_type.as_deref(), &body) {
        Ok(key) => {
            if let (Some(d), Some(s)) = (key, sender) {
                s.try_send(SipEvent::InfoKey(d)).ok();
            }
            handle.reply(StatusCode::OK).await.ok();
        }
        Err(e @ info::InfoError::Unsupported(_)) => {
            let headers = vec![
                Header::Accept(info::ACCEPTED_TYPES.into()),
                warning(&e.to_string()),
            ];
            handle
                .respond(StatusCode::UnsupportedMediaType, Some(headers), None)
                .await
                .ok();
        }
        Err(e) => {
            handle
                .respond(
                    StatusCode::BadRequest,
                    Some(vec![warning(&e.to_string())]),
                    None,
                )
                .await
                .ok();
        }
    }
}

/// Asks the call for an SDP answer to a re-INVITE / UPDATE and sends it.
async fn answer_reoffer(
    sender: Option<mpsc::Sender<SipEvent>>,
    offer: Vec<u8>,
    handle: TransactionHandle,
) {
    let Some(sender) = sender else {
        handle
            .reply(StatusCode::CallTransactionDoesNotExist)
            .await
            .ok();
        return;
    };
    let (answer_tx, answer_rx) = oneshot::channel();
    if sender
        .try_send(SipEvent::Reoffer {
            offer,
            answer: answer_tx,
        })
        .is_err()
    {
        handle
            .respond(
                StatusCode::ServiceUnavailable,
                Some(vec![Header::RetryAfter("1".into())]),
                None,
            )
            .await
            .ok();
        return;
    }
    match tokio::time::timeout(REINVITE_ANSWER_TIMEOUT, answer_rx).await {
        Ok(Ok(Ok(sdp))) => {
            let headers = vec![
                Header::ContentType("application/sdp".into()),
                Header::Allow(ALLOW.into()),
            ];
            handle
                .respond(StatusCode::OK, Some(headers), Some(sdp.into_bytes()))
                .await
                .ok();
        }
        Ok(Ok(Err(e))) => {
            let code = match e {
                SdpError::Malformed(_) => StatusCode::BadRequest,
                SdpError::NoCommonCodec => StatusCode::NotAcceptableHere,
            };
            handle
                .respond(code, Some(vec![warning(&e.to_string())]), None)
                .await
                .ok();
        }
        _ => {
            handle.reply(StatusCode::ServerInternalError).await.ok();
        }
    }
}

fn warning(text: &str) -> Header {
    let text = text.replace('"', "'");
    Header::Warning(format!("399 agentgw \"{text}\"").into())
}

/// Answers a request statelessly (every request outside a call, and the refusals of requests
/// in one), as Kamailio's `sl_send_reply` and PJSIP's `pjsip_endpt_respond_stateless` refuse
/// calls: the answer is sent once and the transaction let go unanswered, so the SIP stack
/// keeps nothing of it. A retransmission of the request is a new request, answered again
/// (the same To tag: it is derived from the request), and the ACK of a refused INVITE
/// matches nothing and is dropped.
///
/// Kept by the SIP stack instead, every answer would cost ~1.8 KiB for 32 s (64×T1), and a
/// refused INVITE over UDP would be sent again on a timer until an ACK (RFC 3261 Timer G,
/// ~11 times in 32 s): a UDP source can be forged, so each forged INVITE would make a stream
/// of answers at someone else. rsipstack also files each refused INVITE in a table that it
/// scans whole when any finished transaction expires, so n refusals within 32 s cost n² (40,000
/// of them: 4 s of CPU; see BENCHMARKS). A caller that misses the answer retransmits its
/// request (Timer A/E) and is answered again.
fn spawn_reply(tx: Transaction, code: StatusCode, headers: Vec<Header>) {
    if tx.original.method == Method::Ack {
        return;
    }
    tokio::spawn(async move {
        let mut request = tx.original.clone();
        if !matches!(code.kind(), rsipstack::sip::StatusCodeKind::Provisional) {
            if let Ok(to) = request.to_header() {
                if to.tag().ok().flatten().is_none() {
                    let tagged = to.clone().with_tag(stateless_tag(&request).into());
                    request.headers.unique_push(tagged.into());
                }
            }
        }
        let mut response = tx.endpoint_inner.make_response(&request, code, None);
        response.headers.extend(headers);
        let sent = match tx.connection.as_ref() {
            Some(c) => c.send(response.into(), tx.destination.as_ref()).await,
            None => Ok(()),
        };
        if let Err(e) = sent {
            debug!(error = %e, "reply not sent");
        }
        // `tx` is dropped unanswered here: the SIP stack forgets it.
    });
}

/// A To tag for a stateless answer: the same for a request and its retransmissions (same
/// Call-ID, From tag and branch), unguessable from outside (a key chosen at start).
fn stateless_tag(request: &rsipstack::sip::Request) -> String {
    use std::hash::BuildHasher;
    static KEY: std::sync::OnceLock<std::hash::RandomState> = std::sync::OnceLock::new();
    let call_id = request.call_id_header().map(|c| c.value().to_string()).ok();
    let from_tag = request
        .from_header()
        .ok()
        .and_then(|f| f.tag().ok().flatten())
        .map(|t| t.to_string());
    let branch = request
        .via_header()
        .ok()
        .and_then(|v| rsipstack::sip::ToTypedHeader::typed(v).ok())
        .and_then(|v| v.branch().map(|b| b.to_string()));
    let h = KEY
        .get_or_init(std::hash::RandomState::new)
        .hash_one((call_id, from_tag, branch));
    format!("sl{h:016x}")
}

async fn answer_if_unanswered(tx: &mut Transaction, code: StatusCode) {
    if tx.last_response.is_none() && tx.original.method != Method::Ack {
        tx.reply(code).await.ok();
    }
}

/// Runs a server transaction to its end so its timers and retransmissions work.
async fn drain(mut tx: Transaction) {
    let limit = tokio::time::sleep(Duration::from_secs(64));
    tokio::pin!(limit);
    loop {
        tokio::select! {
            m = tx.receive() => if m.is_none() { break },
            _ = &mut limit => break,
        }
    }
}

/// A SIP UDP socket bound to `addr`, its receive buffer asked at `buffer` bytes (0: the
/// kernel's default). The kernel's default (208 KiB on Linux) holds ~48 datagrams on
/// loopback (each charged 2-4 KiB): a burst of INVITEs longer than that while the SIP
/// thread is busy is dropped, and each phone waits 0.5 s to retransmit (1,000 INVITEs at
/// once: 293 answered at once with the default, 333 with 416 KiB, all 1,000 with 8 MiB).
/// What the kernel kept (it caps the request at `net.core.rmem_max`) is logged.
fn udp_socket(addr: SocketAddr, buffer: usize) -> std::io::Result<tokio::net::UdpSocket> {
    use std::os::fd::AsRawFd;
    let socket = std::net::UdpSocket::bind(addr)?;
    socket.set_nonblocking(true)?;
    if buffer > 0 {
        let fd = socket.as_raw_fd();
        let asked = libc::c_int::try_from(buffer).unwrap_or(libc::c_int::MAX);
        let len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SO_RCVBUFFORCE passes `net.core.rmem_max` where the process may (CAP_NET_ADMIN,
        // as root), as wireguard-go does; else SO_RCVBUF, which the kernel caps.
        let set = |option: libc::c_int| {
            // SAFETY: `fd` is this socket's, open for the call; the option value is a
            // c_int whose size is passed with it.
            unsafe {
                libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    option,
                    (&asked as *const libc::c_int).cast(),
                    len,
                )
            }
        };
        if set(libc::SO_RCVBUFFORCE) != 0 && set(libc::SO_RCVBUF) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut got: libc::c_int = 0;
        let mut got_len = len;
        // SAFETY: as above; `got` and `got_len` are valid for the kernel to write.
        let read = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                (&mut got as *mut libc::c_int).cast(),
                &mut got_len,
            )
        };
        // Linux keeps twice what is asked (half of it for its bookkeeping), at most twice
        // `net.core.rmem_max`, and reports what it keeps (`ss -uam` shows it as `rb`).
        let kept = if read == 0 { got as usize } else { 0 };
        if kept < 2 * buffer {
            warn!(
                %addr,
                asked_kib = buffer / 1024,
                kept_kib = kept / 1024,
                "SIP UDP receive buffer capped by the kernel's net.core.rmem_max (sysctl -w net.core.rmem_max=BYTES raises it; [sip] udp_receive_buffer_kib)"
            );
        } else {
            info!(%addr, kib = kept / 1024, "SIP UDP receive buffer");
        }
    }
    tokio::net::UdpSocket::from_std(socket)
}

fn source_of(tx: &Transaction) -> Option<SocketAddr> {
    tx.connection
        .as_ref()
        .and_then(|c| c.get_remote_addr())
        .and_then(|a| a.get_socketaddr().ok())
}

impl Acceptor {
    /// The caller's station: From user@host, or what the PBX asserts (P-Asserted-Identity, or
    /// a header it sets) when so configured and present.
    fn station_of(&self, tx: &Transaction) -> String {
        let asserted = match self.settings.station_from {
            // The extension keyed replaces From later, in the login.
            StationFrom::From | StationFrom::Prompt => None,
            StationFrom::Pai => tx
                .original
                .header_value("P-Asserted-Identity")
                .and_then(|v| identity_of(&v)),
            StationFrom::Header => tx
                .original
                .header_value(&self.settings.station_header)
                .map(|v| v.trim().chars().take(MAX_STATION_CHARS).collect::<String>())
                .filter(|v| !v.is_empty()),
        };
        asserted.unwrap_or_else(|| from_station(tx))
    }
}

/// Longest station identity kept (a peer controls it).
const MAX_STATION_CHARS: usize = 128;

/// `user@host` (or the number of a tel: URI) of a name-addr such as
/// `"Desk 7" <sip:2007@pbx.example:5060;user=phone>`.
fn identity_of(value: &str) -> Option<String> {
    let uri = match (value.find('<'), value.find('>')) {
        (Some(a), Some(b)) if a < b => &value[a + 1..b],
        _ => value.trim(),
    };
    let rest = uri
        .strip_prefix("sip:")
        .or_else(|| uri.strip_prefix("sips:"))
        .or_else(|| uri.strip_prefix("tel:"))?;
    let rest = rest.split([';', '?']).next()?;
    let id = match rest.split_once('@') {
        Some((user, host)) => {
            let host = if host.starts_with('[') {
                host.split_inclusive(']').next().unwrap_or(host)
            } else {
                host.split(':').next().unwrap_or(host)
            };
            format!("{user}@{host}")
        }
        None => rest.to_string(),
    };
    (!id.is_empty()).then(|| id.chars().take(MAX_STATION_CHARS).collect())
}

/// From user@host: the caller's station.
fn from_station(tx: &Transaction) -> String {
    let Ok(from) = tx.original.from_header() else {
        return String::new();
    };
    match from.uri() {
        Ok(uri) => {
            let host = uri.host_with_port.host.to_string();
            match uri.auth {
                Some(a) => format!("{}@{}", a.user, host),
                None => host,
            }
        }
        Err(_) => String::new(),
    }
}

/// The local address the caller reaches us on: the listener's configured address when it is
/// bound to one, else the address the kernel routes replies to the caller from.
fn local_ip_towards(listen: &[ListenAddr], tx: &Transaction, source: SocketAddr) -> IpAddr {
    let bound = tx.connection.as_ref().and_then(|c| {
        let port = c.get_addr().get_socketaddr().ok()?.port();
        let transport = match c.transport() {
            rsipstack::sip::transport::Transport::Udp => Transport::Udp,
            _ => Transport::Tcp,
        };
        listen
            .iter()
            .find(|l| l.transport == transport && l.addr.port() == port)
            .map(|l| l.addr.ip())
            .filter(|ip| !ip.is_unspecified())
    });
    if let Some(ip) = bound {
        return ip;
    }
    let any: SocketAddr = if source.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    std::net::UdpSocket::bind(any)
        .and_then(|s| {
            s.connect(source)?;
            s.local_addr()
        })
        .map(|a| a.ip())
        .unwrap_or(any.ip())
}

mod listen;
mod tcp;
pub use listen::{ListenAddr, Transport};
pub use tcp::TcpConnections;

#[cfg(test)]
#[path = "sip_tests.rs"]
mod tests;

fn contact_uri(tx: &Transaction, ip: IpAddr) -> Option<rsipstack::sip::Uri> {
    let conn = tx.connection.as_ref()?;
    let port = conn.get_addr().get_socketaddr().ok()?.port();
    let host = match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    };
    let transport = match conn.transport() {
        rsipstack::sip::transport::Transport::Udp => "",
        _ => ";transport=tcp",
    };
    rsipstack::sip::Uri::try_from(format!("sip:agentgw@{host}:{port}{transport}").as_str()).ok()
}
