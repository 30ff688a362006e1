//! New requests outside a call: admission (calls at once and a second, overload), stateless
//! refusals, and an INVITE turned into an `IncomingCall` for the gateway.

use super::*;

pub(super) struct Acceptor {
    /// New calls are refused while the gateway drains.
    pub(super) draining: Arc<AtomicBool>,
    pub(super) dialogs: Arc<DialogLayer>,
    pub(super) state_tx: rsipstack::dialog::dialog::DialogStateSender,
    pub(super) routes: Routes,
    pub(super) calls_tx: mpsc::Sender<(IncomingCall, CallSlot)>,
    pub(super) calls: CallCounter,
    pub(super) settings: SipSettings,
    pub(super) admission: Mutex<Admission>,
}

/// A call's `Route::reinvite` flag held while its re-INVITE is handled.
pub(super) struct ReinviteGuard(Arc<AtomicBool>);

impl ReinviteGuard {
    /// Raises the flag, or None while another re-INVITE of the call is being handled.
    pub(super) fn take(flag: Arc<AtomicBool>) -> Option<Self> {
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
pub(super) struct Admission {
    pub(super) rate: CallRate,
    pub(super) overloaded: RefusalLog,
    pub(super) at_max_calls: RefusalLog,
    /// Requests in calls refused for `MAX_REQUESTS_PER_SECOND_PER_CALL`.
    pub(super) in_call_requests: RefusalLog,
    /// Requests in calls refused for `MAX_REQUESTS_BEFORE_ACK` (`_IN_ALL`).
    pub(super) before_ack: RefusalLog,
}

impl Acceptor {
    /// Whether a new call at `now` is refused at once, and the Retry-After to give: the
    /// media threads are behind (`refuse_when_overloaded`), or it is over
    /// `max_calls_per_second`. Each kind is logged once a second with its count.
    pub(super) fn refusal(&self, now: std::time::Instant) -> Option<&'static str> {
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

    pub(super) async fn run(
        self: Arc<Self>,
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

    pub(super) async fn on_transaction(self: &Arc<Self>, mut tx: Transaction) {
        // A request over TCP did not pass the datagram check (`max_packets_per_second_per_source`):
        // it is counted here. Over the budget the connection is shut down, as its messages
        // cannot be dropped before the SIP stack has read and parsed them (it reads a TCP
        // connection as fast as it can, into an unbounded queue: an INVITE flood on one
        // connection took the gateway past 12 GB), and the request is dropped unanswered.
        if tx
            .connection
            .as_ref()
            .is_some_and(|c| matches!(c, SipConnection::Tcp(_) | SipConnection::Tls(_)))
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

    /// Takes on a new call from `caller` at `source`: admission, the offer, the station, the
    /// dialog, and the call handed to the gateway.
    pub(super) async fn admit(&self, tx: Transaction, source: SocketAddr, caller: Caller) {
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
        let dialed: String = tx
            .original
            .uri
            .auth
            .as_ref()
            .map(|a| a.user.chars().take(MAX_STATION_CHARS).collect())
            .unwrap_or_default();
        let srtp = self.settings.call_routes.route(&dialed).srtp;
        let over_tls = tx
            .connection
            .as_ref()
            .is_some_and(|c| matches!(c, SipConnection::Tls(_)));
        let body = tx.original.body().clone();
        let offer = if body.iter().all(u8::is_ascii_whitespace) {
            // A late offer: ours, with SRTP keys only over TLS.
            sdp::late_offer_keys(srtp, over_tls).map(|_| None)
        } else {
            sdp::parse(&body).and_then(|m| {
                sdp::choose_crypto(srtp, over_tls, &m)?;
                Ok(Some(m))
            })
        };
        let offer = match offer {
            Ok(m) => m,
            Err(e) => {
                let code = StatusCode::from(e.status());
                info!(%call_id, %source, reason = %e, "INVITE refused: {}", u16::from(code.clone()));
                spawn_reply(tx, code, vec![warning(&e.to_string())]);
                return;
            }
        };
        let station = match &caller {
            Caller::Authenticated(user) => Ok(user.clone()),
            _ => self.station_of(&tx, source.ip()),
        };
        let station = match station {
            Ok(station) if Station::is_withheld(&station) => None,
            Ok(station) => Some(Station(station)),
            Err(why) => {
                warn!(%call_id, %source, reason = %why, "INVITE refused: 400");
                spawn_reply(tx, StatusCode::BadRequest, vec![warning(&why)]);
                return;
            }
        };
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
            call_id: CallId(call_id),
            withheld: station.is_none(),
            caller,
            over_tls,
            srtp,
            station: station.unwrap_or_else(Station::of_one_call),
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
