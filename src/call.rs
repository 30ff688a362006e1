//! One task per call: glues the SIP side, media and `login::flow` to the store. Plumbing only;
//! every decision is in `login/`.

use crate::login::rules::{SourceLimiter, REASON_MOVED};
use crate::login::{Action, CheckOutcome, EndedBy, Flow, FlowConfig, Input, Mode, Outcome};
use crate::media::dtmf::inband::InbandDetector;
use crate::media::dtmf::rfc4733::EventReceiver;
use crate::media::dtmf::{Digit, DtmfMethod, KeyMerger};
use crate::media::g711;
use crate::media::player::Player;
use crate::media::prompts::{Catalog, Codec, Frame, PromptError, FRAME_SAMPLES};
use crate::media::rtp::{self, PortAllocator, RemoteTarget, RtpWriter, MAX_RTP_PACKET};
use crate::sdp::{self, Negotiated, Origin, RemoteMedia};
use crate::sip::{CallSlot, IncomingCall, SipEvent};
use crate::store::{LoginAttempt, LoginPolicy, Store, StoreError};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn, Instrument};

/// What a SIGHUP can change: each call takes the settings current when it starts and keeps
/// them to its end.
#[derive(Debug)]
pub struct Settings {
    /// The prompts of every language in use, by language.
    pub catalogs: HashMap<String, Catalog>,
    /// The configuration (tenant routing).
    pub config: crate::config::Config,
    pub flow: FlowConfig,
    /// Longest a call may last before it is ended with goodbye.
    pub max_call: Duration,
    /// Ringing time before the answer (zero: answer at once).
    pub answer_after: Duration,
    /// DTMF methods accepted.
    pub dtmf_methods: Vec<DtmfMethod>,
    /// The login rules.
    pub policy: LoginPolicy,
    /// How long a stay line (and its session) may last.
    pub session_max: Duration,
}

impl Settings {
    /// Builds the settings of `config`, loading every prompt language it uses (and every
    /// language directory under `[prompts] dir`, for agents' own languages).
    pub fn from_config(config: &crate::config::Config) -> Result<Settings, PromptError> {
        let mut languages = config.languages();
        if let Some(dir) = config.prompts.dir.as_deref() {
            if let Ok(entries) = std::fs::read_dir(dir) {
                for e in entries.flatten() {
                    let name = e.file_name().to_string_lossy().to_string();
                    let is_lang = e.path().is_dir()
                        && name.len() <= 16
                        && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'-');
                    if is_lang && !languages.contains(&name) {
                        languages.push(name);
                    }
                }
            }
        }
        let mut catalogs = HashMap::new();
        for lang in languages {
            let catalog = Catalog::load_language(config.prompts.dir.as_deref(), &lang)?;
            catalogs.insert(lang, catalog);
        }
        Ok(Settings {
            catalogs,
            config: config.clone(),
            flow: FlowConfig::from(&config.login),
            max_call: Duration::from_secs(config.sip.max_call_secs),
            answer_after: Duration::from_millis(config.sip.answer_after_ms),
            dtmf_methods: config.dtmf.methods.clone(),
            policy: LoginPolicy::from(&config.login),
            session_max: Duration::from_secs(config.login.session_max_hours * 3600),
        })
    }
}

/// What every call shares.
#[derive(Debug)]
pub struct CallContext {
    /// The current settings; replaced whole by a reload.
    pub settings: RwLock<Arc<Settings>>,
    pub store: Store,
    pub ports: PortAllocator,
    /// Counters for `/metrics` (keys by method, RTP, calls by outcome), for the whole process.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Sends every call's frames every 20 ms.
    pub pump: Arc<MediaPump>,
    /// The calls up on this gateway.
    pub lines: Lines,
    /// Login attempts per minute per calling station and per source address.
    pub limiters: Mutex<AttemptLimiters>,
}

impl CallContext {
    /// The settings a call starting now uses.
    pub fn settings(&self) -> Arc<Settings> {
        match self.settings.read() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

/// The per-station and per-source attempt limits of the gateway.
#[derive(Debug)]
pub struct AttemptLimiters {
    pub station: SourceLimiter,
    pub source: SourceLimiter,
}

impl AttemptLimiters {
    pub fn from_config(login: &crate::config::LoginConfig) -> AttemptLimiters {
        AttemptLimiters {
            station: SourceLimiter::new(login.station_attempts_per_min),
            source: SourceLimiter::new(login.source_attempts_per_min),
        }
    }

    /// Counts an attempt; false when the station or the source is over its limit.
    fn allow(&mut self, station: &str, source: IpAddr) -> bool {
        let now = std::time::Instant::now();
        let by_station = self.station.allow(station, now);
        let by_source = self.source.allow(&source.to_string(), now);
        by_station && by_source
    }
}

/// Reason audited for an attempt over the per-station or per-source limit.
const REASON_OVER_LIMIT: &str = "too many attempts from this station or source";

/// How long a caller over the attempt limits waits for its "Login incorrect".
const OVER_LIMIT_DELAY: Duration = Duration::from_secs(3);

/// How many 20 ms frames one wake-up may catch up after the task was late.
const MAX_CATCH_UP_FRAMES: u64 = 5;

/// What the call's task keeps of its media: the SDP side. Everything per packet lives in
/// `Line`, driven by the media pump.
struct Media {
    local: SocketAddr,
    origin: Origin,
    shared: Arc<CallMedia>,
}

/// One call's RTP, shared between the call's task and the media pump.
pub struct CallMedia {
    line: Mutex<Line>,
    /// Wakes the call's task when a prompt finished or a key was detected.
    wake: tokio::sync::Notify,
    /// Set when the call's task is done; the pump then drops the line (closing its socket).
    ended: std::sync::atomic::AtomicBool,
}

impl CallMedia {
    fn line(&self) -> std::sync::MutexGuard<'_, Line> {
        match self.line.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

/// Per-packet state of one call: sending its frames, reading its packets and finding keys in
/// them. Only the media pump touches it every 20 ms; the call's task sets what to play and
/// takes what was found.
struct Line {
    socket: std::net::UdpSocket,
    /// Known once the SDP exchange is complete (at once for an offer, at ACK for a late offer).
    negotiated: Option<Negotiated>,
    target: Option<RemoteTarget>,
    /// Whether the peer wants our audio (not on hold).
    peer_receives: bool,
    writer: RtpWriter,
    player: Player,
    /// Ticks of comfort noise so far (a CN packet every `CN_EVERY` ticks).
    cn_ticks: u32,
    /// The call is up (answered, started, not hung up): frames go out.
    active: bool,
    /// Keys are looked for: from the answer (a dialer may key before its ACK arrives; those
    /// wait in `keys` until the ACK) until the hang-up.
    hears_keys: bool,
    events: EventReceiver,
    /// The in-band detector, while this call needs it (off once RFC 4733 events arrive).
    inband: Option<InbandDetector>,
    /// Prompts that finished, for the call's task.
    finished: Vec<crate::media::prompts::PromptId>,
    /// Keys found, for the call's task (at most `MAX_PENDING_KEYS`).
    keys: Vec<(Digit, DtmfMethod)>,
    /// Strict RTP (`[media] strict_rtp`): once the source is learned, drop other sources.
    strict: bool,
    /// RTP packets sent, received, and dropped as from another source (strict RTP), since
    /// the last flush to the process counters.
    sent: u64,
    received: u64,
    foreign: u64,
}

/// Ticks between comfort-noise packets while nothing plays (200 ms).
const CN_EVERY: u32 = 10;
/// Comfort-noise level: -78 dBov, a quiet line (RFC 3389).
const CN_LEVEL: u8 = 78;
/// Keys kept for a call's task that has not taken them yet; more are dropped.
const MAX_PENDING_KEYS: usize = 32;
/// Packets read per call per 20 ms at most (a flood waits in, and overflows, its socket's
/// buffer instead of taking the pump's time from other calls).
const MAX_PACKETS_PER_TICK: usize = 4 * RECV_BATCH;
const RECV_BATCH: usize = 8;

impl Media {
    fn apply_remote(&mut self, remote: &RemoteMedia) {
        let mut line = self.shared.line();
        let keep = line
            .negotiated
            .filter(|n| remote.codecs.contains(&n.codec))
            .map(|n| n.codec);
        let codec = keep.unwrap_or(remote.codecs[0]);
        line.negotiated = Some(Negotiated {
            codec,
            telephone_event: remote.telephone_event,
            comfort_noise: remote.comfort_noise,
        });
        line.player.set_codec(codec);
        match line.target.as_mut() {
            Some(t) => t.on_sdp(remote.addr),
            None => line.target = Some(RemoteTarget::new(remote.addr)),
        }
        line.peer_receives = remote.direction.peer_receives();
    }

    fn negotiated(&self) -> Option<Negotiated> {
        self.shared.line().negotiated
    }

    fn answer_sdp(&mut self, remote: &RemoteMedia) -> String {
        self.origin.version += 1;
        let n = self.negotiated().unwrap_or(remote.negotiate());
        sdp::answer(self.origin, self.local, n, remote.direction.answer())
    }
}

impl Line {
    /// Sends one 20 ms frame (or just advances time when there is nowhere to send it) and
    /// returns the prompt that finished with it.
    fn tick(&mut self) -> Option<crate::media::prompts::PromptId> {
        // Nothing playing (collecting keys, waiting for the store, a stay line between
        // prompts) and the peer offered CN: comfort noise (RFC 3389), one packet every
        // 200 ms, instead of a silence frame every 20 ms; the phone makes its own noise.
        let idle = self.player.playing().is_none();
        if let (true, true, Some(n), Some(to)) = (
            idle,
            self.peer_receives,
            self.negotiated,
            self.target.and_then(|t| t.addr),
        ) {
            if let Some(cn) = n.comfort_noise {
                if self.cn_ticks % CN_EVERY == 0 {
                    let pkt = self.writer.packet(cn, &[CN_LEVEL], FRAME_SAMPLES as u32);
                    if self.socket.send_to(pkt, to).is_ok() {
                        self.sent += 1;
                    }
                } else {
                    self.writer.skip(FRAME_SAMPLES as u32);
                }
                self.cn_ticks += 1;
                return None;
            }
        }
        if self.cn_ticks > 0 {
            // Audio again after comfort noise: a new talkspurt.
            self.writer.mark_next();
            self.cn_ticks = 0;
        }
        let mut frame: Frame = [0; FRAME_SAMPLES];
        let finished = self.player.next_frame(&mut frame);
        match (self.negotiated, self.target.and_then(|t| t.addr)) {
            (Some(n), Some(to)) if self.peer_receives => {
                let pkt = self
                    .writer
                    .packet(n.codec.payload_type(), &frame, FRAME_SAMPLES as u32);
                // A full socket buffer drops this frame rather than stalling the pump.
                if self.socket.send_to(pkt, to).is_ok() {
                    self.sent += 1;
                }
            }
            _ => self.writer.skip(FRAME_SAMPLES as u32),
        }
        finished
    }

    /// Takes one received packet: latches the RTP target to its source (or, with strict RTP,
    /// drops it when it comes from another) and looks for a key in it; returns true when one
    /// was found.
    fn on_packet(&mut self, data: &[u8], from: Option<SocketAddr>) -> bool {
        let Some((hdr, payload)) = rtp::parse(data) else {
            return false;
        };
        if let (Some(t), Some(from)) = (self.target.as_mut(), from) {
            if !t.admit(from, self.strict) {
                self.foreign += 1;
                return false;
            }
        }
        self.received += 1;
        let Some(n) = self.negotiated.filter(|_| self.hears_keys) else {
            return false;
        };
        let found = if n.telephone_event == Some(hdr.payload_type) {
            // RFC 4733 events arrive: in-band detection off for this call.
            self.inband = None;
            self.events
                .on_packet(hdr.ssrc, hdr.timestamp, payload)
                .map(|d| (d, DtmfMethod::Rfc4733))
        } else if let (true, Some(detector)) = (
            n.codec.payload_type() == hdr.payload_type,
            self.inband.as_mut(),
        ) {
            let mut found = None;
            let mut pcm = [0i16; MAX_RTP_PACKET];
            let len = decode(n.codec, payload, &mut pcm);
            detector.feed(&pcm[..len], |d| found = Some(d));
            found.map(|d| (d, DtmfMethod::Inband))
        } else {
            None
        };
        match found {
            Some((d, method)) => self.hold_key(d, method),
            None => false,
        }
    }

    /// Keeps a key for the call's task (at most `MAX_PENDING_KEYS`); whether it was kept.
    fn hold_key(&mut self, d: Digit, method: DtmfMethod) -> bool {
        if self.keys.len() >= MAX_PENDING_KEYS {
            return false;
        }
        self.keys.push((d, method));
        true
    }
}

/// The media pump: a thread per core, each owning a share of the calls. Every 20 ms a thread
/// reads the packets that arrived on its calls' sockets (one epoll query, one `recvmmsg` per
/// socket that has any) and sends each call's frame, in the same order every time, so a
/// call's packets leave at a steady offset within the period. No call task wakes to send or
/// to read a packet: only when a prompt ended or a key was found.
pub struct MediaPump {
    shards: Vec<Arc<Shard>>,
    next: std::sync::atomic::AtomicUsize,
    /// Signs that work at normal priority is short of CPU, for the real-time media threads.
    pub starvation: Arc<Starvation>,
    /// Whether the media threads were asked to run at real-time priority.
    pub realtime: bool,
}

/// Signs that the work at normal priority (the async runtime's SIP and call tasks, the
/// hashing threads, the store) is not getting the CPU: the media threads at real-time
/// priority see each sign once and step down (see `Realtime`): a media thread's own tick can
/// stay under its 15 ms limit while SIP and the hash wait behind it. (It does not make real
/// time safe past the machine's capacity: BENCHMARKS.md, the 300/s storm.)
#[derive(Debug)]
pub struct Starvation {
    start: std::time::Instant,
    /// Milliseconds since `start` at the last sign, plus one (0: none yet).
    last: std::sync::atomic::AtomicU64,
    /// Milliseconds since `start` at the runtime's last heartbeat, plus one (0: none yet),
    /// and the last heartbeat already reported as overdue.
    beat: std::sync::atomic::AtomicU64,
    beat_reported: std::sync::atomic::AtomicU64,
    /// What the last sign was (`SIGN_RUNTIME` or `SIGN_CHECK`) and by how much, for the log.
    last_what: std::sync::atomic::AtomicU8,
    last_late_ms: std::sync::atomic::AtomicU64,
    /// Counts the signs (`agentgw_media_starvation_signs_total`).
    metrics: Arc<crate::metrics::Metrics>,
}

/// The kinds of sign.
pub const SIGN_RUNTIME: u8 = 0;
pub const SIGN_CHECK: u8 = 1;

/// The async runtime is starved when its heartbeat (every `HEARTBEAT`) runs later than this.
pub const RUNTIME_LATE: Duration = Duration::from_millis(100);
const HEARTBEAT: Duration = Duration::from_millis(50);
/// A login check (the store and the hash) taking longer than this is a sign too: the caller
/// has been waiting for the result since the last key (two seconds of silence after the
/// last key is where a caller starts to think the line is dead).
pub const CHECK_SLOW: Duration = Duration::from_secs(2);

impl Starvation {
    fn new(metrics: Arc<crate::metrics::Metrics>) -> Starvation {
        Starvation {
            start: std::time::Instant::now(),
            last: Default::default(),
            beat: Default::default(),
            beat_reported: Default::default(),
            last_what: Default::default(),
            last_late_ms: Default::default(),
            metrics,
        }
    }

    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64 + 1
    }

    /// Records a sign: `what` (`SIGN_RUNTIME`, `SIGN_CHECK`) was `late`.
    pub fn sign(&self, what: u8, late: Duration) {
        use std::sync::atomic::Ordering;
        self.last_what.store(what, Ordering::Relaxed);
        self.last_late_ms
            .store(late.as_millis() as u64, Ordering::Relaxed);
        self.last.store(self.now_ms(), Ordering::Relaxed);
        self.metrics
            .media_starvation_signs
            .fetch_add(1, Ordering::Relaxed);
    }

    /// The last sign, for the log.
    fn describe(&self) -> String {
        use std::sync::atomic::Ordering;
        let late = self.last_late_ms.load(Ordering::Relaxed);
        match self.last_what.load(Ordering::Relaxed) {
            SIGN_RUNTIME => format!("the async runtime was {late} ms late"),
            _ => format!("a login check took {late} ms"),
        }
    }

    /// The runtime's heartbeat ran.
    fn beat(&self) {
        self.beat
            .store(self.now_ms(), std::sync::atomic::Ordering::Relaxed);
    }

    /// Called by the media threads every tick: while the runtime is starved its heartbeat
    /// cannot run to say so, so an overdue heartbeat is a sign too (once per heartbeat).
    fn check_heartbeat(&self) {
        use std::sync::atomic::Ordering;
        let beat = self.beat.load(Ordering::Relaxed);
        if beat == 0 {
            return;
        }
        let overdue =
            Duration::from_millis(self.now_ms().saturating_sub(beat)).saturating_sub(HEARTBEAT);
        if overdue >= RUNTIME_LATE && self.beat_reported.swap(beat, Ordering::Relaxed) != beat {
            self.sign(SIGN_RUNTIME, overdue);
        }
    }

    /// The last sign (0: none); a new value means a new sign.
    fn last(&self) -> u64 {
        self.last.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// The async runtime's heartbeat: a sign of starvation whenever it wakes `RUNTIME_LATE` or
/// more after it asked to (and the media threads give one when it is that overdue). Runs
/// while the gateway runs (only when media is real-time).
pub async fn watch_runtime(starvation: Arc<Starvation>) {
    let mut due = tokio::time::Instant::now() + HEARTBEAT;
    loop {
        starvation.beat();
        tokio::time::sleep_until(due).await;
        let now = tokio::time::Instant::now();
        let late = now.saturating_duration_since(due);
        if late >= RUNTIME_LATE {
            starvation.sign(SIGN_RUNTIME, late);
        }
        due = now + HEARTBEAT;
    }
}

/// Calls handed to one pump thread, waiting for its next tick.
#[derive(Default)]
struct Shard {
    added: Mutex<Vec<Arc<CallMedia>>>,
}

impl std::fmt::Debug for MediaPump {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaPump")
            .field("threads", &self.shards.len())
            .finish_non_exhaustive()
    }
}

/// Ends a call's part in the pump when the call's task ends, however it ends.
struct PumpRegistration(Arc<CallMedia>);

impl Drop for PumpRegistration {
    fn drop(&mut self) {
        self.0
            .ended
            .store(true, std::sync::atomic::Ordering::Release);
    }
}

impl MediaPump {
    /// Starts the pump: `threads` threads (at least one) of its own, so that the 20 ms
    /// schedule does not wait behind the async runtime's tasks, at SCHED_RR `realtime_priority`
    /// when it is not 0 (see `Realtime`). They stop when the pump is dropped.
    pub fn start(
        metrics: Arc<crate::metrics::Metrics>,
        threads: usize,
        realtime_priority: u8,
    ) -> std::io::Result<Arc<MediaPump>> {
        let mut shards = Vec::new();
        let starvation = Arc::new(Starvation::new(metrics.clone()));
        for i in 0..threads.max(1) {
            let shard = Arc::new(Shard::default());
            let set = crate::media::poll::SocketSet::new()?;
            let (weak, metrics) = (Arc::downgrade(&shard), metrics.clone());
            let starvation = starvation.clone();
            std::thread::Builder::new()
                .name(format!("agentgw-media-{i}"))
                .spawn(move || pump_thread(weak, set, metrics, realtime_priority, starvation))?;
            shards.push(shard);
        }
        Ok(Arc::new(MediaPump {
            shards,
            next: Default::default(),
            starvation,
            realtime: realtime_priority > 0,
        }))
    }

    /// Hands a call to the next thread, round robin; its media runs until the returned
    /// registration is dropped.
    fn add(&self, call: &Arc<CallMedia>) -> PumpRegistration {
        let i = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % self.shards.len();
        match self.shards[i].added.lock() {
            Ok(mut a) => a.push(call.clone()),
            Err(p) => p.into_inner().push(call.clone()),
        }
        PumpRegistration(call.clone())
    }
}

/// The frames due at `now` for a tick planned at `next` (one per 20 ms period passed, at
/// most `MAX_CATCH_UP_FRAMES` after a stall, the rest of the stall skipped) and when the next
/// tick is.
fn frames_due(next: std::time::Instant, now: std::time::Instant) -> (u64, std::time::Instant) {
    use crate::media::player::PTIME;
    let mut due = 1;
    let mut next = next + PTIME;
    while next <= now && due < MAX_CATCH_UP_FRAMES {
        next += PTIME;
        due += 1;
    }
    if next <= now {
        next = now + PTIME;
    }
    (due, next)
}

/// A media thread's real-time scheduling (`[media] realtime_priority`). At SCHED_RR the
/// thread's 20 ms burst of sends is not cut into by other work on the machine, which is what
/// keeps each call's packets 20 ms apart (BENCHMARKS.md: 2,000 held lines, p99 deviation
/// 6.5-8.3 ms → 1.3-1.6 ms). But a real-time thread that has more to do than the period
/// allows would starve everything else (SIP, the store: new calls would fail), so a thread
/// busy for more than three quarters of every period for `OVERLOAD_TICKS` goes back to normal
/// scheduling, and so does a thread that sees a sign of `Starvation` (the rest of the gateway
/// short of CPU while the media threads are not). It takes real time again after
/// `CALM_TICKS` under half busy with no sign, and twice as many each time it had to step down
/// again within `STABLE_TICKS` of taking it (up to `MAX_CALM_TICKS`), so that a gateway at its
/// capacity does not swing in and out of real time every few seconds.
struct Realtime {
    priority: u8,
    on: bool,
    busy_ticks: u32,
    calm_ticks: u32,
    /// Calm ticks needed before taking real time again.
    calm_needed: u32,
    /// Ticks at real time since it last took it.
    ticks_on: u32,
    /// Whether it has stepped down before.
    stepped_down: bool,
}

/// Ticks (0.5 s) more than three quarters busy before a media thread gives up real-time
/// priority.
const OVERLOAD_TICKS: u32 = 25;
/// Ticks (5 s) under half busy before it takes it again.
const CALM_TICKS: u32 = 250;
/// Ticks (60 s) at real time after which a step-down starts the calm time afresh.
const STABLE_TICKS: u32 = 3000;
/// The longest calm time (5 min 20 s).
const MAX_CALM_TICKS: u32 = CALM_TICKS * 64;

/// Why a media thread left real time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StepDown {
    /// Its own tick took most of the period.
    Busy,
    /// The rest of the gateway was short of CPU.
    Starved,
}

impl Realtime {
    fn start(priority: u8) -> Realtime {
        let mut rt = Realtime::new(priority, false);
        if priority > 0 {
            match set_scheduling(priority) {
                Ok(()) => rt.on = true,
                Err(e) => {
                    rt.priority = 0;
                    warn!(error = %e, priority, "cannot give the media thread real-time priority (needs CAP_SYS_NICE, or LimitRTPRIO= and RestrictRealtime=no under systemd); it runs at normal priority");
                }
            }
        }
        rt
    }

    fn new(priority: u8, on: bool) -> Realtime {
        Realtime {
            priority,
            on,
            busy_ticks: 0,
            calm_ticks: 0,
            calm_needed: CALM_TICKS,
            ticks_on: 0,
            stepped_down: false,
        }
    }

    /// After each tick: how long its work took, and whether a sign of starvation came in
    /// since the last tick. Returns whether the thread changed to real time (`Some(true)`)
    /// or left it (`Some(false)`).
    fn after_tick(&mut self, work: Duration, starved: Option<&Starvation>) -> Option<bool> {
        match self.decide(work, starved.is_some()) {
            Some(Err(why)) if set_scheduling(0).is_ok() => {
                self.on = false;
                let calm_s = self.calm_needed / 50;
                match why {
                    StepDown::Busy => warn!(
                        calm_s,
                        "a media thread was busy for more than 15 ms of every 20 ms for 0.5 s: it leaves real-time priority so that SIP and the store keep running (the gateway is at its capacity)"
                    ),
                    StepDown::Starved => warn!(
                        calm_s,
                        sign = starved.map(Starvation::describe).unwrap_or_default(),
                        "SIP or the login checks are short of CPU: a media thread leaves real-time priority (the gateway is at its capacity)"
                    ),
                }
                Some(false)
            }
            Some(Ok(())) if set_scheduling(self.priority).is_ok() => {
                self.on = true;
                info!("a media thread is back at real-time priority");
                Some(true)
            }
            _ => None,
        }
    }

    /// Whether to leave (`Some(Err(why))`) or take again (`Some(Ok(()))`) real-time priority
    /// after a tick whose work took `work`, `starved` if a sign came in since the last tick.
    fn decide(&mut self, work: Duration, starved: bool) -> Option<Result<(), StepDown>> {
        use crate::media::player::PTIME;
        if self.priority == 0 {
            return None;
        }
        let (busy, calm) = (work > PTIME * 3 / 4, work < PTIME / 2 && !starved);
        self.busy_ticks = if busy { self.busy_ticks + 1 } else { 0 };
        self.calm_ticks = if calm { self.calm_ticks + 1 } else { 0 };
        if self.on {
            self.ticks_on = self.ticks_on.saturating_add(1);
            let why = if starved {
                StepDown::Starved
            } else if self.busy_ticks >= OVERLOAD_TICKS {
                StepDown::Busy
            } else {
                return None;
            };
            self.calm_needed = match self.stepped_down && self.ticks_on < STABLE_TICKS {
                true => (self.calm_needed * 2).min(MAX_CALM_TICKS),
                false => CALM_TICKS,
            };
            self.stepped_down = true;
            self.calm_ticks = 0;
            Some(Err(why))
        } else if self.calm_ticks >= self.calm_needed {
            self.ticks_on = 0;
            Some(Ok(()))
        } else {
            None
        }
    }
}

/// Lateness of a media thread's ticks that makes the gateway "behind" (`Overload`): this
/// much within one `LATENESS_WINDOW`, counting only ticks a whole period or more late. A
/// one-off stall shorter than this (another process, a page fault) is not overload.
const OVERLOAD_LATENESS: Duration = Duration::from_millis(100);
const LATENESS_WINDOW: Duration = Duration::from_secs(1);

/// One media thread's lateness within the current window, for `Overload`.
#[derive(Debug)]
struct Lateness {
    window_start: std::time::Instant,
    late: Duration,
}

impl Lateness {
    fn new(now: std::time::Instant) -> Lateness {
        Lateness {
            window_start: now,
            late: Duration::ZERO,
        }
    }

    /// A tick that started `late` after its time, at `now`: whether the thread is behind.
    fn tick(&mut self, late: Duration, now: std::time::Instant) -> bool {
        if now.saturating_duration_since(self.window_start) >= LATENESS_WINDOW {
            self.window_start = now;
            self.late = Duration::ZERO;
        }
        if late >= crate::media::player::PTIME {
            self.late += late;
        }
        self.late >= OVERLOAD_LATENESS
    }
}

/// Puts the calling thread at SCHED_RR `priority`, or back to normal scheduling for 0.
fn set_scheduling(priority: u8) -> std::io::Result<()> {
    let (policy, priority) = match priority {
        0 => (libc::SCHED_OTHER, 0),
        p => (libc::SCHED_RR, i32::from(p)),
    };
    let param = libc::sched_param {
        sched_priority: priority,
    };
    // SAFETY: pthread_self() is the calling thread, and `param` lives across the call.
    let r = unsafe { libc::pthread_setschedparam(libc::pthread_self(), policy, &param) };
    match r {
        0 => Ok(()),
        e => Err(std::io::Error::from_raw_os_error(e)),
    }
}

/// One pump thread: every 20 ms, read what arrived, then send a frame for every call.
fn pump_thread(
    shard: std::sync::Weak<Shard>,
    mut calls: crate::media::poll::SocketSet<CallMedia>,
    metrics: Arc<crate::metrics::Metrics>,
    realtime_priority: u8,
    starvation: Arc<Starvation>,
) {
    use crate::media::player::PTIME;
    use std::sync::atomic::Ordering;
    let mut realtime = Realtime::start(realtime_priority);
    let mut last_sign = starvation.last();
    if realtime.on {
        metrics
            .media_realtime_threads
            .fetch_add(1, Ordering::Relaxed);
    }
    let mut added = Vec::new();
    let mut batch = crate::media::poll::RecvBatch::<RECV_BATCH, MAX_RTP_PACKET>::default();
    let mut next = std::time::Instant::now() + PTIME;
    let mut lateness = Lateness::new(next);
    loop {
        let now = std::time::Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        }
        let due;
        let tick_start = std::time::Instant::now();
        if lateness.tick(tick_start.saturating_duration_since(next), tick_start) {
            metrics.overload.behind(tick_start);
        }
        (due, next) = frames_due(next, tick_start);
        if due > 1 {
            metrics.media_late_ticks.fetch_add(1, Ordering::Relaxed);
        }
        let Some(shard) = shard.upgrade() else { break };
        match shard.added.lock() {
            Ok(mut a) => std::mem::swap(&mut *a, &mut added),
            Err(p) => std::mem::swap(&mut *p.into_inner(), &mut added),
        }
        drop(shard);
        for call in added.drain(..) {
            let watched = calls.insert(call.clone(), &call.line().socket);
            if let Err(e) = watched {
                warn!(error = %e, "cannot watch a call's RTP socket: its keys by RFC 4733 and in-band will not be heard");
            }
        }

        // Receive: the sockets with packets queued, each read in batches.
        let (mut sent, mut received, mut foreign) = (0, 0, 0);
        calls.for_each_ready(|call| {
            let mut line = call.line();
            let mut found = false;
            let mut read = 0;
            while read < MAX_PACKETS_PER_TICK {
                let n = match batch.recv(&line.socket) {
                    Ok(n) => n,
                    Err(e) => {
                        debug!(error = %e, "RTP receive failed");
                        0
                    }
                };
                for i in 0..n {
                    let (data, from) = batch.packet(i);
                    found |= line.on_packet(data, from);
                }
                read += n;
                if n < RECV_BATCH {
                    break;
                }
            }
            received += std::mem::take(&mut line.received);
            foreign += std::mem::take(&mut line.foreign);
            drop(line);
            if found {
                call.wake.notify_one();
            }
        });

        // Send: every call's frame, in the same order every tick.
        calls.retain(|call| {
            if call.ended.load(Ordering::Acquire) {
                return false;
            }
            let mut line = call.line();
            if line.active {
                let mut done = false;
                for _ in 0..due {
                    if let Some(p) = line.tick() {
                        line.finished.push(p);
                        done = true;
                    }
                }
                sent += std::mem::take(&mut line.sent);
                drop(line);
                if done {
                    call.wake.notify_one();
                }
            }
            true
        });
        if sent > 0 {
            metrics.rtp_out.fetch_add(sent, Ordering::Relaxed);
        }
        if received > 0 {
            metrics.rtp_in.fetch_add(received, Ordering::Relaxed);
        }
        if foreign > 0 {
            metrics.rtp_foreign.fetch_add(foreign, Ordering::Relaxed);
        }
        if realtime.priority > 0 {
            starvation.check_heartbeat();
        }
        let sign = starvation.last();
        let starved = (sign != last_sign).then_some(&*starvation);
        last_sign = sign;
        match realtime.after_tick(tick_start.elapsed(), starved) {
            Some(true) => metrics
                .media_realtime_threads
                .fetch_add(1, Ordering::Relaxed),
            Some(false) => metrics
                .media_realtime_threads
                .fetch_sub(1, Ordering::Relaxed),
            None => 0,
        };
    }
}

/// Runs one call from answer to hang-up.
pub async fn run(ctx: Arc<CallContext>, call: IncomingCall, slot: CallSlot) {
    let span = tracing::info_span!("call", call_id = %call.call_id, station = %call.station, source = %call.source);
    run_call(ctx, call, slot).instrument(span).await
}

async fn run_call(ctx: Arc<CallContext>, mut call: IncomingCall, _slot: CallSlot) {
    let started_at = Instant::now();
    let settings = ctx.settings();
    let any = match call.local_ip {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    let socket = match ctx.ports.bind(any) {
        Ok(s) => s,
        Err(e) => {
            // Once a second at most: when the ports run out, every new call comes here.
            static NO_PORT: std::sync::Mutex<crate::sip::RefusalLog> =
                std::sync::Mutex::new(crate::sip::RefusalLog::new());
            let log = NO_PORT
                .lock()
                .ok()
                .and_then(|mut l| l.refused(std::time::Instant::now()));
            if let Some(refused) = log {
                warn!(error = %e, refused, "calls refused: no RTP port (one line a second at most)");
            }
            ctx.metrics.call_ended("no-rtp-port");
            call.handle.reject(503);
            return;
        }
    };
    let port = socket.local_addr().map_or(0, |a| a.port());
    let shared = Arc::new(CallMedia {
        line: Mutex::new(Line {
            socket,
            negotiated: None,
            target: None,
            peer_receives: true,
            writer: RtpWriter::default(),
            player: Player::new(Codec::Pcmu),
            cn_ticks: 0,
            active: false,
            hears_keys: true,
            events: EventReceiver::default(),
            inband: settings
                .dtmf_methods
                .contains(&DtmfMethod::Inband)
                .then(InbandDetector::new),
            finished: Vec::new(),
            keys: Vec::new(),
            strict: settings.config.media.strict_rtp,
            sent: 0,
            received: 0,
            foreign: 0,
        }),
        wake: tokio::sync::Notify::new(),
        ended: Default::default(),
    });
    let mut media = Media {
        local: SocketAddr::new(call.local_ip, port),
        origin: Origin {
            session_id: rand::random::<u32>() as u64,
            version: 1,
        },
        shared,
    };
    let sdp = match &call.offer {
        Some(offer) => {
            media.apply_remote(offer);
            let n = media.negotiated().unwrap_or(offer.negotiate());
            sdp::answer(media.origin, media.local, n, offer.direction.answer())
        }
        None => sdp::offer(media.origin, media.local),
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

    let route = settings.config.route(&call.dialed);
    let mode = if route.logout {
        Mode::Logout
    } else {
        Mode::Login
    };
    let store = ctx.store.for_tenant(&route.tenant);
    let policy = Arc::new(LoginPolicy {
        already_logged_on: route.already_logged_on,
        same_station: route.same_station,
        ..settings.policy.clone()
    });
    let Some(mut catalog) = settings
        .catalogs
        .get(&route.language)
        .or_else(|| settings.catalogs.values().next())
    else {
        return;
    };
    // The language of the agent identified by the last check, if it has one of its own.
    let agent_language: Arc<Mutex<Option<String>>> = Arc::default();
    let mut flow = Flow::with_mode(settings.flow.clone(), mode);
    let _pumped = ctx.pump.add(&media.shared);
    let mut check: Option<JoinHandle<Result<CheckOutcome, StoreError>>> = None;
    let mut check_started: Option<std::time::Instant> = None;
    let mut started = false;
    let mut hung_up = false;
    let mut agent: Option<String> = None;
    let mut keys = KeyLog::default();
    let mut merger = KeyMerger::default();
    let mut heard_a_prompt = false;
    let call_deadline = started_at + settings.max_call;
    let stay_deadline = started_at + settings.session_max;
    // This call's line, for the gateway to tell it that its session ended elsewhere.
    let (line_tx, mut line_rx) = tokio::sync::mpsc::channel(4);
    let _line = LineRegistration::new(&ctx, &call.call_id, line_tx);
    // What the pump found since the last wake-up (swapped, so neither side allocates).
    let mut finished = Vec::new();
    let mut found = Vec::new();

    // Two timers for the whole call, moved only when their deadline changes (a timer made
    // afresh on every wake-up costs a timer-wheel insert and removal each time: 100 a second
    // per call).
    let far = Instant::now() + Duration::from_secs(86_400 * 365);
    let flow_timer = tokio::time::sleep_until(far);
    tokio::pin!(flow_timer);
    let mut flow_timer_at: Option<Instant> = None;
    let end_timer = tokio::time::sleep_until(call_deadline);
    tokio::pin!(end_timer);
    let mut end_is_stay = false;

    let outcome = 'call: loop {
        let flow_deadline = flow.poll_timeout().map(Instant::from_std);
        if flow_deadline != flow_timer_at {
            flow_timer.as_mut().reset(flow_deadline.unwrap_or(far));
            flow_timer_at = flow_deadline;
        }
        if flow.is_staying() != end_is_stay {
            end_is_stay = !end_is_stay;
            end_timer.as_mut().reset(if end_is_stay {
                stay_deadline
            } else {
                call_deadline
            });
        }
        // In this order: what happened before a timer fires, when both are ready at once (the
        // task ran late, the machine at its capacity), so that keys that came in before the
        // digit timeout are taken, not cut off by it.
        tokio::select! {
            biased;
            // Once hung up the SIP side has closed the channel, and `recv` would return
            // `None` at once, every time: the task would spin until its check finished.
            ev = call.events.recv(), if !hung_up => match ev {
                None | Some(SipEvent::Hangup) => {
                    hung_up = true;
                    {
                        let mut line = media.shared.line();
                        line.active = false;
                        line.hears_keys = false;
                    }
                    flow.handle(Input::Hangup, std::time::Instant::now());
                }
                Some(SipEvent::Acked { body }) => {
                    if !started {
                        if media.negotiated().is_none() {
                            match sdp::parse(&body) {
                                Ok(answer) => media.apply_remote(&answer),
                                Err(e) => {
                                    warn!(reason = %e, "late-offer ACK carried no usable SDP answer");
                                    call.handle.bye("bad-sdp").await;
                                    break 'call Outcome::CallerHungUp;
                                }
                            }
                        }
                        started = true;
                        media.shared.line().active = !hung_up;
                        flow.handle(Input::Started, std::time::Instant::now());
                        // Keys that came between our 200 and the ACK (a dialer keying the
                        // moment it is answered) waited in the line: typed ahead, not lost.
                        std::mem::swap(&mut media.shared.line().keys, &mut found);
                        for (d, method) in found.drain(..) {
                            keys.take(&ctx, &settings.dtmf_methods, &mut merger, d, method, &mut flow);
                        }
                    }
                }
                Some(SipEvent::InfoKey(d)) => {
                    if started {
                        keys.take(&ctx, &settings.dtmf_methods, &mut merger, d, DtmfMethod::Info, &mut flow);
                    } else {
                        media.shared.line().hold_key(d, DtmfMethod::Info);
                    }
                }
                Some(SipEvent::Reoffer { offer, answer }) => {
                    let reply = sdp::parse(&offer).map(|remote| {
                        media.apply_remote(&remote);
                        media.answer_sdp(&remote)
                    });
                    answer.send(reply).ok();
                }
            },
            _ = media.shared.wake.notified() => {
                {
                    let mut line = media.shared.line();
                    std::mem::swap(&mut line.finished, &mut finished);
                    // Before the ACK the keys wait in the line (taken at the ACK).
                    if started {
                        std::mem::swap(&mut line.keys, &mut found);
                    }
                }
                for (d, method) in found.drain(..) {
                    keys.take(&ctx, &settings.dtmf_methods, &mut merger, d, method, &mut flow);
                }
                for done in finished.drain(..) {
                    heard_a_prompt = true;
                    flow.handle(Input::PromptDone(done), std::time::Instant::now());
                }
            },
            r = join_opt(&mut check) => {
                check = None;
                if let Some(t) = check_started.take() {
                    let took = t.elapsed();
                    if took > CHECK_SLOW && ctx.pump.realtime {
                        ctx.pump.starvation.sign(SIGN_CHECK, took);
                    }
                }
                let result = match r {
                    Ok(Ok(outcome)) => {
                        // Right credentials: from now on the agent's own language, if any.
                        let lang = agent_language.lock().ok().and_then(|l| l.clone());
                        let own = lang
                            .filter(|_| outcome != CheckOutcome::Incorrect)
                            .and_then(|l| settings.catalogs.get(&l));
                        if let Some(c) = own {
                            catalog = c;
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
                flow.handle(Input::CheckResult(result), std::time::Instant::now());
            },
            Some(event) = line_rx.recv() => {
                let input = match event {
                    LineEvent::SessionEnded { by } => Input::SessionEnded { by },
                    LineEvent::Shutdown => Input::Shutdown,
                };
                flow.handle(input, std::time::Instant::now());
            },
            _ = &mut flow_timer, if flow_timer_at.is_some() => {
                flow.handle_timeout(std::time::Instant::now());
            },
            _ = &mut end_timer => {
                flow.handle(Input::TimeLimit, std::time::Instant::now());
            },
        }

        while let Some(action) = flow.poll_action() {
            match action {
                Action::Play(p) => media.shared.line().player.play(p, catalog.get(p)),
                Action::StopPrompt => {
                    media.shared.line().player.stop();
                }
                Action::Check {
                    agent: a,
                    passcode,
                    replace,
                    new_passcode,
                    extension,
                } => {
                    agent = Some(a.0.clone());
                    let attempt = LoginAttempt {
                        agent: a,
                        passcode,
                        station: call.station.clone(),
                        source: call.source.to_string(),
                        source_ip: call.source.ip(),
                        call_id: call.call_id.clone(),
                        replace,
                        new_passcode,
                        extension,
                    };
                    let allowed = replace
                        || ctx
                            .limiters
                            .lock()
                            .map(|mut l| l.allow(&call.station, call.source.ip()))
                            .unwrap_or(true);
                    let (policy2, store2, language2) =
                        (policy.clone(), store.clone(), agent_language.clone());
                    // Timed for the real-time media threads' guard (refusals wait on purpose).
                    check_started = allowed.then(std::time::Instant::now);
                    check = Some(tokio::spawn(async move {
                        if !allowed {
                            // Not told why, and slowed down: no agent number can be learned.
                            store2
                                .refuse(&attempt, "login_refused", REASON_OVER_LIMIT)
                                .await?;
                            tokio::time::sleep(OVER_LIMIT_DELAY).await;
                            return Ok(CheckOutcome::Incorrect);
                        }
                        let (outcome, lang) = match mode {
                            Mode::Login => store2.login_identified(&attempt, &policy2).await?,
                            Mode::Logout => {
                                store2.logout_with_credentials(&attempt, &policy2).await?
                            }
                        };
                        if let Ok(mut l) = language2.lock() {
                            *l = lang;
                        }
                        Ok(outcome)
                    }));
                }
                Action::LogoutStation => {
                    let (store, station) = (store.clone(), call.station.clone());
                    check = Some(tokio::spawn(async move {
                        let agent = store
                            .logout_station(&station, "logged off by phone at the station")
                            .await?;
                        Ok(if agent.is_some() {
                            CheckOutcome::LoggedOff
                        } else {
                            CheckOutcome::NotLoggedOn
                        })
                    }));
                }
                Action::SetStatus(status) => {
                    let (store, a) = (store.clone(), agent.clone().unwrap_or_default());
                    check = Some(tokio::spawn(async move {
                        Ok(match store.set_status(&a, status).await? {
                            true => CheckOutcome::Status(status),
                            false => CheckOutcome::NotLoggedOn,
                        })
                    }));
                }
                Action::QueryStatus => {
                    let (store, a) = (store.clone(), agent.clone().unwrap_or_default());
                    check = Some(tokio::spawn(async move {
                        Ok(store
                            .status(&a)
                            .await?
                            .map_or(CheckOutcome::NotLoggedOn, CheckOutcome::Status))
                    }));
                }
                Action::Logout { reason } => {
                    let (store, a) = (store.clone(), agent.clone().unwrap_or_default());
                    check = Some(tokio::spawn(async move {
                        Ok(match store.logout(&a, reason).await? {
                            true => CheckOutcome::LoggedOff,
                            false => CheckOutcome::NotLoggedOn,
                        })
                    }));
                }
                Action::Release { agent: a } => {
                    if let Err(e) = store.logout(&a.0, "caller hung up before the result").await {
                        warn!(agent = %a, error = %e, "could not release the session of a caller who hung up");
                    }
                }
                Action::Hangup(outcome) => {
                    if !hung_up {
                        call.handle.bye(outcome.as_str()).await;
                    }
                    break 'call outcome;
                }
            }
        }
        if hung_up && check.is_none() && flow.poll_timeout().is_none() {
            break 'call Outcome::CallerHungUp;
        }
    };
    if keys.count == 0 && heard_a_prompt && outcome != Outcome::Unavailable {
        warn!("no DTMF received: check the phone's DTMF mode (RFC 4733, SIP INFO or in-band)");
    }
    info!(
        outcome = outcome.as_str(),
        agent = agent.as_deref().unwrap_or(""),
        keys = keys.count,
        dtmf = keys.methods(),
        secs = started_at.elapsed().as_secs_f32(),
        "call ended"
    );
    ctx.metrics.call_ended(outcome.as_str());
}

/// What the gateway tells a call from outside.
#[derive(Debug, Clone, Copy)]
pub enum LineEvent {
    /// Its session ended elsewhere.
    SessionEnded { by: EndedBy },
    /// The gateway shuts down.
    Shutdown,
}

/// The calls up on this gateway, by Call-ID.
pub type Lines = Mutex<HashMap<String, tokio::sync::mpsc::Sender<LineEvent>>>;

/// A call's entry in `Lines`, removed when the call task ends.
struct LineRegistration<'a> {
    ctx: &'a CallContext,
    call_id: String,
}

impl<'a> LineRegistration<'a> {
    fn new(ctx: &'a CallContext, call_id: &str, tx: tokio::sync::mpsc::Sender<LineEvent>) -> Self {
        if let Ok(mut lines) = ctx.lines.lock() {
            lines.insert(call_id.to_string(), tx);
        }
        LineRegistration {
            ctx,
            call_id: call_id.to_string(),
        }
    }
}

impl Drop for LineRegistration<'_> {
    fn drop(&mut self) {
        if let Ok(mut lines) = self.ctx.lines.lock() {
            lines.remove(&self.call_id);
        }
    }
}

/// Tells every call up that the gateway shuts down.
pub fn shut_down_lines(ctx: &CallContext) {
    if let Ok(lines) = ctx.lines.lock() {
        for line in lines.values() {
            line.try_send(LineEvent::Shutdown).ok();
        }
    }
}

/// Tells the stay lines of this gateway when their session ended elsewhere (a log on at
/// another station, a station taken over, an agent removed, a force logout from the API or the
/// CLI): they play the drop prompt and hang up. The audit log's `logout` entries are the
/// source, so an end written by another process reaches the line too.
pub async fn drop_ended_lines(
    ctx: Arc<CallContext>,
    mut events: tokio::sync::broadcast::Receiver<Arc<crate::store::AuditRecord>>,
) {
    loop {
        match events.recv().await {
            Ok(e) => {
                if e.event != "logout" {
                    continue;
                }
                let Some(call_id) = e.call_id.as_deref() else {
                    continue;
                };
                let line = ctx.lines.lock().ok().and_then(|l| l.get(call_id).cloned());
                if let Some(line) = line {
                    let by = match e.reason.as_deref().unwrap_or("") {
                        REASON_MOVED => EndedBy::LogOnElsewhere,
                        crate::store::REASON_ADMINISTRATOR => EndedBy::Administrator,
                        _ => EndedBy::Other,
                    };
                    line.try_send(LineEvent::SessionEnded { by }).ok();
                }
            }
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                warn!(
                    missed = n,
                    "session-ended events were missed; some stay lines may not be dropped"
                );
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
        }
    }
}

/// The keys of one call: how many, and which methods delivered them.
#[derive(Debug, Default)]
struct KeyLog {
    count: u32,
    seen: Vec<DtmfMethod>,
}

impl KeyLog {
    /// Counts a key from `method` and passes it to the flow unless it is another method's
    /// report of the last press, or a method the config does not accept.
    fn take(
        &mut self,
        ctx: &CallContext,
        accepted: &[DtmfMethod],
        merger: &mut KeyMerger,
        d: Digit,
        method: DtmfMethod,
        flow: &mut Flow,
    ) {
        if !accepted.contains(&method) || !merger.accept(d, method, std::time::Instant::now()) {
            return;
        }
        ctx.metrics.dtmf.add(method);
        if !self.seen.contains(&method) {
            self.seen.push(method);
            info!(method = method.as_str(), "keys arrive by {method}");
        }
        self.count += 1;
        flow.handle(Input::Digit(d), std::time::Instant::now());
    }

    fn methods(&self) -> String {
        self.seen
            .iter()
            .map(|m| m.as_str())
            .collect::<Vec<_>>()
            .join("+")
    }
}

/// Decodes a G.711 payload (any packet time) to linear samples for the in-band detector;
/// returns how many were written.
fn decode(codec: Codec, payload: &[u8], out: &mut [i16]) -> usize {
    for (o, &b) in out.iter_mut().zip(payload) {
        *o = match codec {
            Codec::Pcmu => g711::ulaw_to_linear(b),
            Codec::Pcma => g711::alaw_to_linear(b),
        };
    }
    payload.len().min(out.len())
}

async fn join_opt<T>(h: &mut Option<JoinHandle<T>>) -> Result<T, tokio::task::JoinError> {
    match h {
        Some(h) => h.await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn lateness_is_overload_past_100_ms_of_late_ticks_within_a_second() {
        let t0 = std::time::Instant::now();
        let ms = Duration::from_millis;
        // Jitter under a period never counts; a one-off 60 ms stall is not overload.
        let mut l = Lateness::new(t0);
        assert!(!(0..40).any(|i| l.tick(ms(15), t0 + ms(20 * i))));
        assert!(!l.tick(ms(60), t0 + ms(820)));
        // Ticks a period late, again and again within the second: overload at 100 ms.
        assert!(!l.tick(ms(20), t0 + ms(840)));
        assert!(l.tick(ms(20), t0 + ms(860)));
        // A new second starts from nothing.
        assert!(!l.tick(ms(20), t0 + ms(1900)));
        // One stall of 150 ms: overload at once.
        let mut l = Lateness::new(t0);
        assert!(l.tick(ms(150), t0 + ms(200)));
    }
    use super::*;
    use crate::media::player::PTIME;

    #[test]
    fn media_ticks_catch_up_a_few_frames_then_skip() {
        let t0 = std::time::Instant::now();
        // On time: one frame, the next tick a period later.
        assert_eq!(frames_due(t0, t0), (1, t0 + PTIME));
        // Woken 2.5 periods late: the missed frames too, and back on the old schedule.
        let (due, next) = frames_due(t0, t0 + PTIME * 5 / 2);
        assert_eq!((due, next), (3, t0 + PTIME * 3));
        // A long stall: at most MAX_CATCH_UP_FRAMES, and a new schedule from now.
        let late = t0 + PTIME * 40;
        assert_eq!(frames_due(t0, late), (MAX_CATCH_UP_FRAMES, late + PTIME));
    }

    /// Feeds `n` ticks of `work` to `rt`: the first `n - 1` must decide nothing; returns the
    /// decision of the last.
    fn ticks(rt: &mut Realtime, n: u32, work: Duration) -> Option<Result<(), StepDown>> {
        for _ in 0..n - 1 {
            assert_eq!(rt.decide(work, false), None);
        }
        rt.decide(work, false)
    }

    #[test]
    fn a_real_time_media_thread_steps_down_when_overloaded_and_back_when_calm() {
        let mut rt = Realtime::new(10, true);
        let (busy, light, middling) = (PTIME * 9 / 10, PTIME / 10, PTIME * 6 / 10);
        // Busy ticks with a normal one among them: the count starts over.
        assert_eq!(ticks(&mut rt, OVERLOAD_TICKS - 1, busy), None);
        assert_eq!(rt.decide(middling, false), None);
        assert_eq!(ticks(&mut rt, OVERLOAD_TICKS - 1, busy), None);
        assert_eq!(
            rt.decide(busy, false),
            Some(Err(StepDown::Busy)),
            "0.5 s over 3/4 busy"
        );
        rt.on = false;
        assert_eq!(
            ticks(&mut rt, CALM_TICKS, light),
            Some(Ok(())),
            "5 s under half"
        );
        // Normal scheduling asked for: never anything to do.
        let mut off = Realtime::new(0, false);
        assert!((0..CALM_TICKS * 2).all(|_| off.decide(light, true).is_none()));
    }

    #[test]
    fn a_real_time_media_thread_steps_down_when_the_rest_of_the_gateway_starves() {
        let light = PTIME / 10;
        let mut rt = Realtime::new(10, true);
        assert_eq!(rt.decide(light, false), None);
        // Its own ticks are light, but SIP or the checks are late: at once.
        assert_eq!(rt.decide(light, true), Some(Err(StepDown::Starved)));
        rt.on = false;
        // A sign while at normal priority starts the calm time over.
        assert_eq!(ticks(&mut rt, CALM_TICKS - 10, light), None);
        assert_eq!(rt.decide(light, true), None);
        assert_eq!(ticks(&mut rt, CALM_TICKS, light), Some(Ok(())));
        rt.on = true;
        // Starved again soon after: twice the calm time, then four times.
        for (n, calm) in [(1, CALM_TICKS * 2), (2, CALM_TICKS * 4)] {
            assert_eq!(ticks(&mut rt, 100, light), None);
            assert_eq!(
                rt.decide(light, true),
                Some(Err(StepDown::Starved)),
                "step-down {n}"
            );
            rt.on = false;
            assert_eq!(
                ticks(&mut rt, calm, light),
                Some(Ok(())),
                "back after {calm} ticks"
            );
            rt.on = true;
        }
        // A minute at real time: the next step-down waits the first calm time again.
        assert_eq!(ticks(&mut rt, STABLE_TICKS, light), None);
        assert_eq!(rt.decide(light, true), Some(Err(StepDown::Starved)));
        rt.on = false;
        assert_eq!(ticks(&mut rt, CALM_TICKS, light), Some(Ok(())));
    }

    #[test]
    fn starvation_signs_are_new_values() {
        let metrics: Arc<crate::metrics::Metrics> = Arc::default();
        let s = Starvation::new(metrics.clone());
        assert_eq!(s.last(), 0);
        s.sign(SIGN_RUNTIME, Duration::from_millis(150));
        let first = s.last();
        assert_eq!(s.describe(), "the async runtime was 150 ms late");
        assert_ne!(first, 0);
        std::thread::sleep(Duration::from_millis(2));
        s.sign(SIGN_CHECK, Duration::from_millis(1500));
        assert_ne!(s.last(), first);
        assert_eq!(s.describe(), "a login check took 1500 ms");
        let signs = &metrics.media_starvation_signs;
        assert_eq!(signs.load(std::sync::atomic::Ordering::Relaxed), 2);
        // The heartbeat: no sign before the first beat, none while it is on time, one when
        // it is overdue (however many times the media threads look), and a new one for the
        // next overdue beat.
        let before = s.last();
        s.check_heartbeat();
        s.beat();
        s.check_heartbeat();
        assert_eq!(s.last(), before);
        std::thread::sleep(HEARTBEAT + RUNTIME_LATE + Duration::from_millis(20));
        s.check_heartbeat();
        let overdue = s.last();
        assert_ne!(overdue, before);
        assert!(s.describe().starts_with("the async runtime was "));
        s.check_heartbeat();
        assert_eq!(s.last(), overdue);
        s.beat();
        std::thread::sleep(HEARTBEAT + RUNTIME_LATE + Duration::from_millis(20));
        s.check_heartbeat();
        assert_ne!(s.last(), overdue);
        assert_eq!(signs.load(std::sync::atomic::Ordering::Relaxed), 4);
    }
}
