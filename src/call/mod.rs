//! One task per call: the driver that hands SIP events, media events and store replies to
//! `login::flow` and performs its actions. It decides nothing about a login.

mod answer;
mod context;
mod lines;
mod liveness;
mod requests;

pub use context::{AttemptLimiters, CallContext, Settings};
pub use lines::{drop_ended_lines, shut_down_lines, LineEvent, Lines};

use crate::login::flow::Q850_BAD_MEDIA;
use crate::login::keys::{Keys, Taken};
use crate::login::{Action, AgentNumber, CheckOutcome, Flow, Input, Mode, Outcome};
use crate::media::dtmf::{Digit, DtmfMethod};
use crate::media::prompts::Catalog;
use crate::media::realtime::{CHECK_SLOW, SIGN_CHECK};
use crate::sip::{CallSlot, IncomingCall, SipEvent};
use crate::store::LoginAttempt;
use answer::Media;
use lines::LineRegistration;
use liveness::Liveness;
use requests::{Reply, Requests};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{info, warn, Instrument};

/// Runs one call from answer to hang-up.
pub async fn run(ctx: Arc<CallContext>, call: IncomingCall, slot: CallSlot) {
    let span = tracing::info_span!("call", call_id = %call.call_id, station = %call.station, source = %call.source);
    run_call(ctx, call, slot).instrument(span).await
}

async fn run_call(ctx: Arc<CallContext>, mut call: IncomingCall, _slot: CallSlot) {
    let started_at = Instant::now();
    let settings = ctx.settings();
    let inband = settings.dtmf_methods.contains(&DtmfMethod::Inband);
    let Some((media, sdp)) = Media::open(&ctx, &call, inband, settings.strict_rtp) else {
        ctx.metrics.call_ended("no-rtp-port");
        call.handle.reject(503);
        return;
    };
    if !settings.answer_after.is_zero() {
        call.handle.ring();
        tokio::select! {
            _ = tokio::time::sleep(settings.answer_after) => {}
            _ = call.events.recv() => {
                info!(outcome = Outcome::CallerHungUp.as_str(), "call ended before answer");
                ctx.metrics.call_ended(Outcome::CallerHungUp.as_str());
                return;
            }
        }
    }
    if !call.handle.answer(sdp) {
        return;
    }
    let route = settings.routes.route(&call.dialed);
    let Some(language) = Some(route.language.clone())
        .filter(|l| settings.catalogs.contains_key(l))
        .or_else(|| settings.catalogs.keys().next().cloned())
    else {
        return;
    };
    let mut driver = Driver {
        requests: Requests {
            store: ctx.store.for_tenant(route.tenant.as_str()),
            policy: Arc::new(settings.policy.for_route(&route)),
        },
        flow: Flow::with_mode(
            settings
                .flow
                .for_caller(call.withheld, call.caller.station_verified()),
            route.mode(),
        ),
        mode: route.mode(),
        keys: Keys::new(&settings.dtmf_methods),
        language,
        media,
        call,
        check: None,
        check_started: None,
        probe: None,
        started: false,
        hung_up: false,
        heard_a_prompt: false,
        agent: None,
        ctx,
        settings,
    };
    let outcome = driver.run(started_at).await;
    if driver.keys.none_arrived(driver.heard_a_prompt, outcome) {
        warn!("no DTMF received: check the phone's DTMF mode (RFC 4733, SIP INFO or in-band)");
    }
    info!(
        outcome = outcome.as_str(),
        agent = driver.agent.as_ref().map_or("", |a| a.0.as_str()),
        keys = driver.keys.count(),
        dtmf = driver.keys.methods(),
        secs = started_at.elapsed().as_secs_f32(),
        "call ended"
    );
    driver.ctx.metrics.call_ended(outcome.as_str());
}

/// One answered call.
struct Driver {
    ctx: Arc<CallContext>,
    /// The settings current when the call started, kept to its end.
    settings: Arc<Settings>,
    call: IncomingCall,
    media: Media,
    flow: Flow,
    mode: Mode,
    keys: Keys,
    /// The prompt language playing (the tenant's, then the agent's own).
    language: String,
    requests: Requests,
    /// The store request in progress, and when it started (a slow one is a sign that the
    /// store or the hash are short of CPU).
    check: Option<JoinHandle<Reply>>,
    check_started: Option<std::time::Instant>,
    /// (Stay lines) a probe of a silent phone in flight: whether it answered.
    probe: Option<JoinHandle<bool>>,
    /// The caller's ACK came: media flows and keys go to the flow.
    started: bool,
    hung_up: bool,
    heard_a_prompt: bool,
    /// The agent number of the last check.
    agent: Option<AgentNumber>,
}

impl Driver {
    /// Runs the call to its end; how it ended.
    async fn run(&mut self, started_at: Instant) -> Outcome {
        let call_deadline = started_at + self.settings.max_call;
        let stay_deadline = started_at + self.settings.session_max;
        // This call's line, for the gateway to tell it that its session ended elsewhere.
        let (line_tx, mut line_rx) = tokio::sync::mpsc::channel(4);
        let ctx = self.ctx.clone();
        let _line = LineRegistration::new(&ctx, self.call.call_id.as_str(), line_tx);
        let _pumped = ctx.pump.add(&self.media.line);
        // What the pump found since the last wake-up (swapped, so neither side allocates).
        let mut finished = Vec::new();
        let mut found = Vec::new();
        // Two timers for the whole call, moved only when their deadline changes (a timer made
        // afresh on every wake-up costs a timer-wheel insert and removal each time).
        let far = Instant::now() + Duration::from_secs(86_400 * 365);
        let flow_timer = tokio::time::sleep_until(far);
        tokio::pin!(flow_timer);
        let mut flow_timer_at: Option<Instant> = None;
        let end_timer = tokio::time::sleep_until(call_deadline);
        tokio::pin!(end_timer);
        // A stay line's liveness, looked at every second (`line_timeout_secs`; 0: never).
        let mut liveness = self
            .settings
            .line_timeout
            .map(|t| Liveness::new(t, std::time::Instant::now()));
        let mut every_second = tokio::time::interval(Duration::from_secs(1));
        let mut end_is_stay = false;
        loop {
            let flow_deadline = self.flow.poll_timeout().map(Instant::from_std);
            if flow_deadline != flow_timer_at {
                flow_timer.as_mut().reset(flow_deadline.unwrap_or(far));
                flow_timer_at = flow_deadline;
            }
            if self.flow.is_staying() != end_is_stay {
                end_is_stay = !end_is_stay;
                let end = if end_is_stay {
                    stay_deadline
                } else {
                    call_deadline
                };
                end_timer.as_mut().reset(end);
            }
            // In this order: what happened before a timer fires, when both are ready at once
            // (the task ran late), so that keys that came before the digit timeout are taken.
            tokio::select! {
                biased;
                // Once hung up the SIP side has closed the channel, and `recv` would return
                // `None` at once, every time.
                ev = self.call.events.recv(), if !self.hung_up => {
                    if let Some(outcome) = self.on_sip(ev, &mut found).await {
                        return outcome;
                    }
                }
                _ = self.media.line.woken() => {
                    // Before the ACK the keys wait in the line (taken at the ACK).
                    self.media.line.take(&mut finished, self.started.then_some(&mut found));
                    for (d, method) in found.drain(..) {
                        self.key(d, method);
                    }
                    for done in finished.drain(..) {
                        self.heard_a_prompt = true;
                        self.input(Input::PromptDone(done));
                    }
                }
                r = join_opt(&mut self.check) => self.on_reply(r),
                Some(event) = line_rx.recv() => self.input(match event {
                    LineEvent::SessionEnded { by } => Input::SessionEnded { by },
                    LineEvent::Shutdown => Input::Shutdown,
                }),
                _ = &mut flow_timer, if flow_timer_at.is_some() => {
                    self.flow.handle_timeout(std::time::Instant::now());
                }
                _ = &mut end_timer => self.input(Input::TimeLimit),
                _ = every_second.tick(), if self.flow.is_staying() && self.probe.is_none() => {
                    let now = std::time::Instant::now();
                    if liveness.as_mut().is_some_and(|l| l.silent(self.media.line.heard(), now)) {
                        let handle = self.call.handle.clone();
                        self.probe = Some(tokio::spawn(async move { handle.probe().await }));
                    }
                }
                answered = join_opt(&mut self.probe) => {
                    self.probe = None;
                    if answered.unwrap_or(false) {
                        if let Some(l) = liveness.as_mut() {
                            l.answered(std::time::Instant::now());
                        }
                    } else {
                        warn!("the stay line's phone sent no RTP and did not answer: station lost");
                        self.input(Input::LineLost);
                    }
                }
            }
            if let Some(outcome) = self.perform().await {
                return outcome;
            }
            if self.hung_up && self.check.is_none() && self.flow.poll_timeout().is_none() {
                return Outcome::CallerHungUp;
            }
        }
    }

    fn input(&mut self, input: Input) {
        self.flow.handle(input, std::time::Instant::now());
    }

    /// Hands a key to the flow, unless it is not one to take.
    fn key(&mut self, d: Digit, method: DtmfMethod) {
        let Taken::Press {
            digit,
            first_by_method,
        } = self.keys.take(d, method, std::time::Instant::now())
        else {
            return;
        };
        self.ctx.keys.add(method);
        if first_by_method {
            info!(method = method.as_str(), "keys arrive by {method}");
        }
        self.input(Input::Digit(digit));
    }

    /// One SIP event; the outcome when the call is over.
    async fn on_sip(
        &mut self,
        ev: Option<SipEvent>,
        found: &mut Vec<(Digit, DtmfMethod)>,
    ) -> Option<Outcome> {
        match ev {
            None | Some(SipEvent::Hangup) => {
                self.hung_up = true;
                self.media.line.hang_up();
                self.input(Input::Hangup);
            }
            Some(SipEvent::Acked { body }) if !self.started => {
                if let Err(e) = self.media.on_ack(&body) {
                    warn!(reason = %e, "late-offer ACK carried no usable SDP answer");
                    self.call.handle.bye("bad-sdp", Q850_BAD_MEDIA).await;
                    return Some(Outcome::CallerHungUp);
                }
                self.started = true;
                self.media.line.set_active(!self.hung_up);
                self.input(Input::Started);
                // Keys that came between our 200 and the ACK (a dialer keying the moment it
                // is answered) waited in the line: typed ahead, not lost.
                self.media.line.take_keys(found);
                for (d, method) in found.drain(..) {
                    self.key(d, method);
                }
            }
            Some(SipEvent::Acked { .. }) => {}
            Some(SipEvent::InfoKey(d)) if self.started => self.key(d, DtmfMethod::Info),
            Some(SipEvent::InfoKey(d)) => self.media.line.hold_key(d, DtmfMethod::Info),
            Some(SipEvent::Reoffer { offer, answer }) => {
                answer.send(self.media.reoffer(&offer)).ok();
            }
        }
        None
    }

    /// A store request's reply, for the flow.
    fn on_reply(&mut self, r: Result<Reply, tokio::task::JoinError>) {
        self.check = None;
        if let Some(t) = self.check_started.take() {
            let took = t.elapsed();
            if took > CHECK_SLOW && self.ctx.pump.realtime {
                self.ctx.pump.starvation.sign(SIGN_CHECK, took);
            }
        }
        let outcome = match r {
            Ok(Ok((outcome, language))) => {
                if let Some(l) = language {
                    self.input(Input::AgentLanguage(l));
                }
                outcome
            }
            Ok(Err(e)) => {
                warn!(error = %e, "store unavailable during login");
                CheckOutcome::Unavailable
            }
            Err(e) => {
                warn!(error = %e, "login check failed");
                CheckOutcome::Unavailable
            }
        };
        self.input(Input::CheckResult(outcome));
    }

    fn catalog(&self) -> Option<&Catalog> {
        self.settings.catalogs.get(&self.language)
    }

    /// Performs the flow's actions; the outcome when the call is over.
    async fn perform(&mut self) -> Option<Outcome> {
        while let Some(action) = self.flow.poll_action() {
            let request = match action {
                Action::Play(p) => {
                    if let Some(c) = self.catalog() {
                        self.media.line.play(p, c.get(p));
                    }
                    None
                }
                Action::StopPrompt => {
                    self.media.line.stop_prompt();
                    None
                }
                Action::UseLanguage(l) => {
                    if self.settings.catalogs.contains_key(&l) {
                        self.language = l;
                    }
                    None
                }
                Action::Check {
                    agent,
                    passcode,
                    replace,
                    new_passcode,
                    extension,
                } => {
                    self.agent = Some(agent.clone());
                    let (station, source) = (&self.call.station, self.call.source);
                    let over_limit = !replace
                        && !self
                            .ctx
                            .limiters
                            .lock()
                            .map(|mut l| l.allow(station.as_str(), source.ip()))
                            .unwrap_or(true);
                    let attempt = LoginAttempt {
                        agent,
                        passcode,
                        station: station.clone(),
                        source: source.to_string(),
                        source_ip: source.ip(),
                        call_id: self.call.call_id.clone(),
                        replace,
                        new_passcode,
                        extension,
                        over_limit,
                    };
                    Some(self.requests.check(self.mode, attempt))
                }
                Action::LogoutStation => {
                    Some(self.requests.logout_station(self.call.station.clone()))
                }
                Action::SetStatus(status) => {
                    Some(self.requests.set_status(self.agent_number(), status))
                }
                Action::QueryStatus => Some(self.requests.query_status(self.agent_number())),
                Action::Logout { reason } => {
                    Some(self.requests.logout(self.agent_number(), reason))
                }
                Action::Release { agent } => {
                    let reason = "caller hung up before the result";
                    if let Err(e) = self.requests.store.logout(&agent.0, reason).await {
                        warn!(agent = %agent, error = %e, "could not release the session of a caller who hung up");
                    }
                    None
                }
                Action::Hangup(outcome) => {
                    if !self.hung_up {
                        self.call
                            .handle
                            .bye(outcome.as_str(), outcome.q850_cause())
                            .await;
                    }
                    return Some(outcome);
                }
            };
            if let Some(request) = request {
                self.check = Some(request);
                self.check_started = Some(std::time::Instant::now());
            }
        }
        None
    }

    fn agent_number(&self) -> AgentNumber {
        self.agent
            .clone()
            .unwrap_or_else(|| AgentNumber(String::new()))
    }
}

async fn join_opt<T>(h: &mut Option<JoinHandle<T>>) -> Result<T, tokio::task::JoinError> {
    match h {
        Some(h) => h.await,
        None => std::future::pending().await,
    }
}
