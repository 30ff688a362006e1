//! The requests of a call routed to its task: the route table by dialog, the requests that
//! come before the caller's ACK held until it (bounded), one re-INVITE at a time, a rate per call.

use super::*;

/// Dialog id → its call's route.
pub(super) type Routes = Arc<Mutex<RouteTable>>;

#[derive(Default)]
pub(super) struct RouteTable {
    pub(super) calls: HashMap<String, Route>,
    /// Requests waiting for their call's ACK, in all calls (`MAX_REQUESTS_BEFORE_ACK_IN_ALL`).
    pub(super) before_ack: usize,
}

/// Where a dialog's events go, and its budget of requests from the caller.
pub(super) struct Route {
    pub(super) events: mpsc::Sender<SipEvent>,
    pub(super) requests: TokenBucket,
    /// The gateway has hung up (`CallHandle::bye`).
    pub(super) hung_up: Arc<AtomicBool>,
    /// A re-INVITE from the caller is being handled (until its ACK; `ReinviteGuard`).
    pub(super) reinvite: Arc<AtomicBool>,
    /// Requests from the caller that came before its ACK, in order, at most
    /// `MAX_REQUESTS_BEFORE_ACK`; handed to the dialog once it is confirmed.
    pub(super) before_ack: VecDeque<Transaction>,
    /// `before_ack` is being handed on: later requests queue behind it, so none overtakes.
    pub(super) handing_on: bool,
}

impl Route {
    pub(super) fn new(events: mpsc::Sender<SipEvent>, hung_up: Arc<AtomicBool>) -> Route {
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

pub(super) fn route(routes: &Routes, id: &str) -> Option<mpsc::Sender<SipEvent>> {
    routes
        .lock()
        .ok()
        .and_then(|r| r.calls.get(id).map(|r| r.events.clone()))
}

/// What becomes of a request from the caller inside its call, before its dialog sees it.
pub(super) enum InCall {
    /// On to the dialog; for a routed call, its re-INVITE flag.
    Go(Option<Arc<AtomicBool>>),
    /// Over `MAX_REQUESTS_PER_SECOND_PER_CALL`.
    OverBudget,
    /// The gateway has hung up the call.
    HungUp,
}

/// What `hold_for_ack` did with a request in a call.
pub(super) enum Held {
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
pub(super) fn hold_for_ack(
    routes: &Routes,
    id: &str,
    dialog: &InviteDialog,
    tx: Transaction,
) -> Held {
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
pub(super) fn hand_on_before_ack(routes: &Routes, id: &str, dialog: InviteDialog) {
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
pub(super) fn in_call(routes: &Routes, id: &str, now: std::time::Instant) -> InCall {
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
