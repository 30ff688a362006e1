//! `agentgw-load`: simulated phones for load tests. Each call INVITEs (PCMU or PCMA plus
//! telephone-event), ACKs, receives the prompts, keys the agent number and passcode as RFC 4733
//! events (after each prompt, or type-ahead), and is classified by the prompts it hears: the
//! prompt frames are matched exactly against the built-in catalog, so the same run measures the
//! result latency (last key → first packet of the result prompt). Against another IVR, whose
//! prompts are not agentgw's, a prompt is a stretch of speech followed by 700 ms of silence
//! (the keys go after it), and a call is classified by how it ends: by when the IVR hangs up
//! after the last key (`ivr_hangup`), or by its waiting on the line after its answer
//! (`ivr_waits`).
//!
//! Its own fair share: the phones' RTP is sent and read by one thread per core every 20 ms
//! (no timer or task wake-up per phone or per packet), fixed receive buffers, and RTP packets
//! built in place, so that no packet allocates; arrival times are the kernel's.

mod rtp;
pub mod sip;

use agentgw::media::prompts::{Catalog, Codec, Frame, PromptId};
use agentgw::media::pump::{MediaPump, PumpSettings};
use agentgw::media::srtp::{self, MasterKey, Suite};
use agentgw::metrics::Metrics;
use sip::{sdp_media, Channel, Signalling};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The telephone-event payload type offered.
const TE_PT: u8 = 101;
/// Inter-arrival deviation histogram: 0.1 ms buckets up to 100 ms.
const DEV_BUCKETS: usize = 1000;

/// What a run does.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub target: SocketAddr,
    /// The Request-URI user to call.
    pub uri_user: String,
    /// UDP, TCP or TLS.
    pub signalling: Signalling,
    /// SRTP: offer RTP/SAVP with a key of this suite (a=crypto, RFC 4568).
    pub srtp: Option<Suite>,
    /// Phone accounts (user, password) to answer a Digest challenge with, used in turn by
    /// the calls; none: a challenge fails the call.
    pub phone_accounts: Vec<(String, String)>,
    /// New calls per second.
    pub rate: f64,
    /// Calls up at once at most.
    pub concurrency: usize,
    /// Stop after this many calls (or at `duration`, whichever first).
    pub calls: Option<u64>,
    pub duration: Option<Duration>,
    /// (agent number, passcode), used in turn.
    pub agents: Vec<(String, String)>,
    /// Key everything right after the answer instead of after each prompt.
    pub type_ahead: bool,
    /// Keep the line up this long after the login, then hang up.
    pub stay: Option<Duration>,
    pub codec: Codec,
    /// Send 20 ms silence packets while not keying, as a phone does.
    pub send_audio: bool,
    /// Offer comfort noise (CN).
    pub comfort_noise: bool,
    /// The longest a call may take (not counting `stay`).
    pub call_timeout: Duration,
    /// The local address to send from.
    pub local_ip: IpAddr,
    /// Against another IVR: what its hanging up after the passcode means, by how long after
    /// the last key it did (outcome, from, to); none matching: `peer-hung-up`.
    pub ivr_hangup: Vec<(Outcome, Duration, Duration)>,
    /// Against another IVR: what it means when it answers the passcode and then waits on the
    /// line (`IVR_WAITS` of silence after its answer without hanging up), as a login IVR does
    /// that asks again after refusing a login.
    pub ivr_waits: Outcome,
}

/// How long another IVR may stay silent after its answer to the passcode before the call
/// counts as `ivr_waits` (it wants keys again).
pub const IVR_WAITS: Duration = Duration::from_secs(3);

/// How a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    LoggedIn,
    Incorrect,
    AlreadyOn,
    Locked,
    /// Another agentgw prompt ended the attempt (station in use, service unavailable, …).
    OtherPrompt,
    /// Not agentgw's prompts: the peer hung up (another IVR).
    PeerHungUp,
    NoAnswer,
    SipError,
    Timeout,
}

impl Outcome {
    pub const ALL: [Outcome; 9] = [
        Outcome::LoggedIn,
        Outcome::Incorrect,
        Outcome::AlreadyOn,
        Outcome::Locked,
        Outcome::OtherPrompt,
        Outcome::PeerHungUp,
        Outcome::NoAnswer,
        Outcome::SipError,
        Outcome::Timeout,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::LoggedIn => "logged-in",
            Outcome::Incorrect => "incorrect",
            Outcome::AlreadyOn => "already-on",
            Outcome::Locked => "locked",
            Outcome::OtherPrompt => "other-prompt",
            Outcome::PeerHungUp => "peer-hung-up",
            Outcome::NoAnswer => "no-answer",
            Outcome::SipError => "sip-error",
            Outcome::Timeout => "timeout",
        }
    }

    /// The outcome named `s` (as printed: `logged-in`, `incorrect` …).
    pub fn parse(s: &str) -> Option<Outcome> {
        Outcome::ALL.into_iter().find(|o| o.as_str() == s)
    }

    /// What a result prompt says about the attempt.
    fn of_prompt(p: PromptId) -> Option<Outcome> {
        Some(match p {
            PromptId::AgentUser | PromptId::AgentPass => return None,
            PromptId::AgentLoginOk => Outcome::LoggedIn,
            PromptId::AgentIncorrect | PromptId::LoginIncorrect => Outcome::Incorrect,
            PromptId::AgentAlreadyOn | PromptId::AgentAlreadyOnRetry => Outcome::AlreadyOn,
            PromptId::AgentLocked => Outcome::Locked,
            _ => Outcome::OtherPrompt,
        })
    }
}

/// One call's result.
#[derive(Debug, Clone)]
pub struct CallReport {
    pub outcome: Outcome,
    /// The final status of a refused INVITE.
    pub sip_status: Option<u16>,
    /// The result prompt heard (for `other-prompt`).
    pub prompt: Option<PromptId>,
    /// INVITE → 200.
    pub setup: Option<Duration>,
    /// Last key sent → first packet of the result prompt.
    pub result: Option<Duration>,
    /// Last key sent → the peer's BYE, when it hung up after all keys were sent.
    pub hangup: Option<Duration>,
    pub rtp_received: u64,
    /// When the call started, from the start of the run.
    pub started: Duration,
}

/// The prompt frames, by content.
pub(crate) struct PromptIndex {
    frames: HashMap<Frame, (PromptId, u16)>,
    /// Length of each prompt, in frames.
    pub(crate) lengths: HashMap<PromptId, u32>,
    silence: Frame,
}

impl PromptIndex {
    fn new(codec: Codec) -> PromptIndex {
        let catalog = Catalog::load(None).expect("the built-in prompts load");
        let mut owners: HashMap<Frame, Vec<(PromptId, u16)>> = HashMap::new();
        let mut lengths = HashMap::new();
        for p in PromptId::ALL {
            let prompt = catalog.get(p);
            let frames = prompt.frames(codec);
            lengths.insert(p, frames.len() as u32);
            for (i, f) in frames.iter().enumerate() {
                let e = owners.entry(*f).or_default();
                if !e.iter().any(|(q, _)| *q == p) {
                    e.push((p, i as u16));
                }
            }
        }
        let silence = *codec.silence();
        let frames = owners
            .into_iter()
            .filter(|(f, v)| v.len() == 1 && *f != silence)
            .map(|(f, v)| (f, v[0]))
            .collect();
        PromptIndex {
            frames,
            lengths,
            silence,
        }
    }

    pub(crate) fn find(&self, payload: &[u8]) -> Option<(PromptId, u16)> {
        let frame: &Frame = payload.try_into().ok()?;
        if *frame == self.silence {
            return None;
        }
        self.frames.get(frame).copied()
    }
}

/// What every call shares: the media threads, what the phones' media needs, the counters.
pub struct Shared {
    pump: MediaPump<rtp::Phone>,
    media: Arc<rtp::Hearing>,
    /// RTP sent and received, and the generator's own media ticks that ran a period or more
    /// late with the longest gap between two of its ticks: when it falls behind, the keys and
    /// audio it sends are late, and the figures are not the gateway's alone.
    metrics: Arc<Metrics>,
    pub started: AtomicU64,
    pub finished: AtomicU64,
    pub failed: AtomicU64,
}

impl Shared {
    /// The shared state and its media threads (one per core), which stop when it is dropped.
    pub fn new(codec: Codec) -> std::io::Result<Arc<Shared>> {
        let metrics: Arc<Metrics> = Arc::default();
        let pump = MediaPump::start(
            PumpSettings {
                name: "load-media",
                threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
                realtime_priority: 0,
            },
            metrics.clone(),
            Arc::default(),
        )?;
        Ok(Arc::new(Shared {
            pump,
            media: Arc::new(rtp::Hearing::new(PromptIndex::new(codec))),
            metrics,
            started: AtomicU64::new(0),
            finished: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        }))
    }
}

fn random_token() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// Places one call and reports how it went.
pub async fn one_call(
    n: u64,
    agent: (String, String),
    opts: Arc<LoadOptions>,
    shared: Arc<Shared>,
) -> CallReport {
    let mut report = CallReport {
        outcome: Outcome::Timeout,
        sip_status: None,
        prompt: None,
        setup: None,
        result: None,
        hangup: None,
        rtp_received: 0,
        started: Duration::ZERO,
    };
    let deadline = tokio::time::Instant::now() + opts.call_timeout + opts.stay.unwrap_or_default();
    let r =
        tokio::time::timeout_at(deadline, call_flow(n, &agent, &opts, &shared, &mut report)).await;
    if r.is_err() {
        report.outcome = if report.setup.is_none() {
            Outcome::NoAnswer
        } else {
            Outcome::Timeout
        };
    }
    report
}

async fn call_flow(
    n: u64,
    agent: &(String, String),
    opts: &LoadOptions,
    shared: &Shared,
    report: &mut CallReport,
) {
    let Ok(mut ch) = Channel::open(&opts.signalling, opts.local_ip, opts.target).await else {
        report.outcome = Outcome::SipError;
        return;
    };
    let rtp_socket = std::net::UdpSocket::bind(SocketAddr::new(opts.local_ip, 0)).and_then(|s| {
        s.set_nonblocking(true)?;
        agentgw::media::poll::enable_timestamps(&s)?;
        Ok(s)
    });
    let Ok(rtp_socket) = rtp_socket else {
        report.outcome = Outcome::SipError;
        return;
    };
    let local = ch
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::new(opts.local_ip, 0));
    let rtp_port = rtp_socket.local_addr().map_or(0, |a| a.port());
    let phone = rtp::Phone::new(
        rtp_socket,
        opts.codec,
        opts.send_audio,
        shared.media.clone(),
    );
    let _media = shared.pump.add(&phone);
    let transport = opts.signalling.via();
    let contact_param = opts.signalling.contact_param();
    let call_id = format!("{}-{n}@agentgw-load", random_token());
    let from_tag = random_token();
    let fam = if local.is_ipv4() { "IP4" } else { "IP6" };
    let ip = local.ip();
    let cn = if opts.comfort_noise { " 13" } else { "" };
    let srtp_key = opts.srtp.map(MasterKey::generate);
    let (profile, crypto) = match &srtp_key {
        Some(k) => (
            "RTP/SAVP",
            format!("a=crypto:1 {} {}\r\n", k.suite.name(), k.to_inline()),
        ),
        None => ("RTP/AVP", String::new()),
    };
    let sdp = format!(
        "v=0\r\no=load {n} 1 IN {fam} {ip}\r\ns=-\r\nc=IN {fam} {ip}\r\nt=0 0\r\nm=audio {rtp_port} {profile} {pt} {TE_PT}{cn}\r\n\
         a=rtpmap:{pt} {name}/8000\r\na=rtpmap:{TE_PT} telephone-event/8000\r\na=fmtp:{TE_PT} 0-16\r\n{cnmap}{crypto}a=ptime:20\r\na=sendrecv\r\n",
        pt = opts.codec.payload_type(),
        name = opts.codec.name(),
        cnmap = if opts.comfort_noise { "a=rtpmap:13 CN/8000\r\n" } else { "" },
    );
    let target = opts.target;
    let ruri = format!("sip:{}@{target}", opts.uri_user);
    let station = format!("load{n}");
    let from = format!("<sip:{station}@{ip}>;tag={from_tag}");
    // `extra`: header lines such as an in-dialog request's Route (empty: none).
    let request = |method: &str,
                   uri: &str,
                   cseq: u32,
                   to: &str,
                   extra: &str,
                   body: &str,
                   ctype: bool| {
        format!(
            "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/{transport} {local};branch=z9hG4bK{};rport\r\nMax-Forwards: 70\r\n\
             {extra}From: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\nContact: <sip:{station}@{local}{contact_param}>\r\n\
             User-Agent: agentgw-load\r\n{}Content-Length: {}\r\n\r\n{body}",
            random_token(),
            if ctype { "Content-Type: application/sdp\r\n" } else { "" },
            body.len()
        )
    };
    let to_plain = format!("<{ruri}>");
    let mut invite_cseq = 1;
    let mut invite = request("INVITE", &ruri, invite_cseq, &to_plain, "", &sdp, true);
    let sent_at = Instant::now();
    shared.started.fetch_add(1, Relaxed);
    if ch.send(&invite).await.is_err() {
        report.outcome = Outcome::SipError;
        return;
    }

    // Until the final response: retransmit over UDP (T1 doubling).
    let mut rto = Duration::from_millis(500);
    let mut next_rtx = tokio::time::Instant::now() + rto;
    let ok = loop {
        tokio::select! {
            m = ch.recv() => {
                let Some(m) = m else { report.outcome = Outcome::SipError; return; };
                let Some(status) = m.status() else { continue; };
                if m.cseq_method() != "INVITE" || m.cseq() != Some(invite_cseq) || status < 200 {
                    if status >= 100 { next_rtx = tokio::time::Instant::now() + Duration::from_secs(3600); }
                    continue;
                }
                if status >= 300 {
                    let to = m.header("To").unwrap_or("").to_string();
                    let ack = request("ACK", &ruri, invite_cseq, &to, "", "", false);
                    let _ = ch.send(&ack).await;
                    // A Digest challenge answered once, as the next phone account.
                    let account = opts.phone_accounts.get(n as usize % opts.phone_accounts.len().max(1));
                    let answer = account.filter(|_| status == 401 && invite_cseq == 1).and_then(|(user, password)| {
                        m.headers("WWW-Authenticate").find_map(|c| {
                            agentgw::digest::authorization(c, (user, password), "INVITE", &ruri, 1)
                        })
                    });
                    if let Some(answer) = answer {
                        invite_cseq += 1;
                        let auth = format!("Authorization: {answer}\r\n");
                        invite = request("INVITE", &ruri, invite_cseq, &to_plain, &auth, &sdp, true);
                        if ch.send(&invite).await.is_err() { break None; }
                        rto = Duration::from_millis(500);
                        next_rtx = tokio::time::Instant::now() + rto;
                        continue;
                    }
                    report.outcome = Outcome::SipError;
                    report.sip_status = Some(status);
                    ch.close().await;
                    return;
                }
                break Some(m);
            }
            _ = tokio::time::sleep_until(next_rtx), if !ch.is_reliable() => {
                let _ = ch.send(&invite).await;
                rto = (rto * 2).min(Duration::from_secs(4));
                next_rtx = tokio::time::Instant::now() + rto;
            }
        }
    };
    let Some(ok) = ok else {
        report.outcome = Outcome::SipError;
        return;
    };
    report.setup = Some(sent_at.elapsed());
    let to = ok.header("To").unwrap_or("").to_string();
    let remote_uri = ok
        .header("Contact")
        .and_then(|c| Some(c.split('<').nth(1)?.split('>').next()?.to_string()))
        .unwrap_or_else(|| ruri.clone());
    // A proxy that record-routed stays in the dialog (RFC 3261 §12.1.2): the route set is the
    // Record-Route reversed, sent on through the same next hop (the target).
    let mut route_set: Vec<&str> = ok
        .headers("Record-Route")
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    route_set.reverse();
    let route = if route_set.is_empty() {
        String::new()
    } else {
        format!("Route: {}\r\n", route_set.join(", "))
    };
    let ack = request("ACK", &remote_uri, invite_cseq, &to, &route, "", false);
    let _ = ch.send(&ack).await;
    {
        let mut line = phone.line();
        line.remote = sdp_media(ok.body());
        // SRTP when the answer carries the gateway's key for ours.
        let theirs = srtp_key.as_ref().and_then(|_| {
            let answer = agentgw::sdp::parse(ok.body().as_bytes()).ok()?;
            answer.crypto.into_iter().next()
        });
        if let (Some(ours), Some(theirs)) = (&srtp_key, theirs) {
            let keys = (srtp::Sender::new(ours), srtp::Receiver::new(&theirs.key));
            line.srtp = Some(Box::new(keys));
        }
        if opts.type_ahead {
            let start = shared.pump.tick() + 5;
            line.keying.push_back(rtp::Keying::new(
                &format!("{}#{}#", agent.0, agent.1),
                start,
            ));
        }
    }
    let mut keyed_user = opts.type_ahead;
    let mut keyed_pass = opts.type_ahead;
    let mut hangup_at: Option<tokio::time::Instant> = None;
    let mut bye_sent = false;
    let mut heard = Vec::new();
    let mut spoken = Vec::new();
    // Another IVR (no agentgw prompt heard): its answer to the passcode (last key → its
    // first packet), and when its silence after that counts as waiting for keys.
    let mut agentgw = false;
    let mut answer: Option<Duration> = None;
    let mut waits_at: Option<tokio::time::Instant> = None;
    loop {
        let far = || tokio::time::Instant::now() + Duration::from_secs(3600);
        let hangup_due = hangup_at.unwrap_or_else(far);
        let waits_due = waits_at.unwrap_or_else(far);
        tokio::select! {
            _ = phone.wake.notified() => {
                let (last_key_at, keys_sent) = {
                    let mut line = phone.line();
                    std::mem::swap(&mut line.heard, &mut heard);
                    std::mem::swap(&mut line.spoken, &mut spoken);
                    (line.last_key_at, keyed_pass && line.keying.is_empty())
                };
                agentgw |= !heard.is_empty();
                for s in spoken.drain(..) {
                    if agentgw || report.result.is_some() {
                        continue;
                    }
                    let now = shared.pump.tick() + 1;
                    if !keyed_user {
                        keyed_user = true;
                        phone.line().keying.push_back(rtp::Keying::new(&format!("{}#", agent.0), now));
                    } else if !keyed_pass {
                        keyed_pass = true;
                        phone.line().keying.push_back(rtp::Keying::new(&format!("{}#", agent.1), now));
                    } else if let (true, Some(k)) = (keys_sent, last_key_at) {
                        // Speech that began after the last key: the IVR's answer.
                        if s.arrival > k {
                            answer.get_or_insert(s.arrival - k);
                            let quiet = rtp::QUIET_TICKS as u32 * agentgw::media::player::PTIME;
                            waits_at = Some(tokio::time::Instant::now() + IVR_WAITS.saturating_sub(quiet));
                        }
                    }
                }
                for h in heard.drain(..) {
                    let p = h.prompt;
                    let frames = shared.media.index.lengths.get(&p).copied().unwrap_or(0) as u64;
                    match p {
                        PromptId::AgentUser if !keyed_user => {
                            keyed_user = true;
                            let k = rtp::Keying::new(&format!("{}#", agent.0), h.tick + frames);
                            phone.line().keying.push_back(k);
                        }
                        PromptId::AgentPass if !keyed_pass => {
                            keyed_pass = true;
                            let k = rtp::Keying::new(&format!("{}#", agent.1), h.tick + frames);
                            phone.line().keying.push_back(k);
                        }
                        p => {
                            if let (Some(o), None) = (Outcome::of_prompt(p), report.result) {
                                report.outcome = o;
                                report.prompt = Some(p);
                                report.result = Some(
                                    last_key_at.map_or(Duration::ZERO, |k| h.arrival.saturating_sub(k)),
                                );
                                hangup_at = Some(match (o, opts.stay) {
                                    (Outcome::LoggedIn, Some(stay)) => tokio::time::Instant::now() + stay,
                                    // agentgw hangs up after its result; give it the prompt's length and some.
                                    (Outcome::LoggedIn, None) => tokio::time::Instant::now() + Duration::from_millis(frames * 20 + 5000),
                                    _ => tokio::time::Instant::now(),
                                });
                            }
                        }
                    }
                }
            }
            m = ch.recv() => {
                let Some(m) = m else { break };
                match m.method() {
                    Some("BYE") => {
                        let _ = ch.send(&m.ok()).await;
                        let (last_key_at, keys_sent, speaking) = {
                            let line = phone.line();
                            (line.last_key_at, keyed_pass && line.keying.is_empty(), line.speaking_since())
                        };
                        if let (true, Some(k)) = (keys_sent, last_key_at) {
                            report.hangup = Some(rtp::since_epoch().saturating_sub(k));
                            // An answer the IVR hung up right after (no silence after it yet).
                            if let Some(a) = speaking.filter(|a| *a > k && answer.is_none()) {
                                answer = Some(a - k);
                            }
                        }
                        if report.result.is_none() {
                            report.outcome = Outcome::PeerHungUp;
                            if let Some(after) = report.hangup.filter(|_| !agentgw) {
                                report.result = answer;
                                if let Some(&(o, _, _)) = opts.ivr_hangup.iter().find(|(_, from, to)| after >= *from && after < *to) {
                                    report.outcome = o;
                                }
                            }
                        }
                        break;
                    }
                    Some("OPTIONS") | Some("INFO") | Some("INVITE") | Some("UPDATE") => {
                        let _ = ch.send(&m.ok()).await;
                    }
                    Some(_) => {}
                    None => {
                        if m.cseq_method() == "INVITE" && m.status() == Some(200) {
                            let _ = ch.send(&ack).await; // a retransmitted 200
                        } else if m.cseq_method() == "BYE" && bye_sent {
                            break;
                        }
                    }
                }
            }
            _ = tokio::time::sleep_until(waits_due), if waits_at.is_some() && report.result.is_none() => {
                // Another IVR answered the passcode and waits on the line.
                waits_at = None;
                report.outcome = opts.ivr_waits;
                report.result = answer;
                hangup_at = Some(match (opts.ivr_waits, opts.stay) {
                    (Outcome::LoggedIn, Some(stay)) => tokio::time::Instant::now() + stay,
                    _ => tokio::time::Instant::now(),
                });
            }
            _ = tokio::time::sleep_until(hangup_due), if hangup_at.is_some() => {
                if bye_sent {
                    break; // no answer to our BYE: give up
                }
                let bye = request("BYE", &remote_uri, invite_cseq + 1, &to, &route, "", false);
                let _ = ch.send(&bye).await;
                bye_sent = true;
                hangup_at = Some(tokio::time::Instant::now() + Duration::from_secs(4));
            }
        }
    }
    report.rtp_received = phone.line().received;
    ch.close().await;
}

/// Percentiles of a set of durations, in milliseconds.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Spread {
    pub count: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Spread {
    fn of(mut v: Vec<Duration>) -> Spread {
        if v.is_empty() {
            return Spread::default();
        }
        v.sort_unstable();
        let at = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize].as_secs_f64() * 1000.0;
        Spread {
            count: v.len(),
            p50_ms: at(0.5),
            p99_ms: at(0.99),
            max_ms: at(1.0),
        }
    }

    fn from_histogram(h: &[u64]) -> Spread {
        let total: u64 = h.iter().sum();
        if total == 0 {
            return Spread::default();
        }
        let at = |q: f64| {
            let want = ((total as f64) * q).ceil().max(1.0) as u64;
            let mut seen = 0;
            for (i, n) in h.iter().enumerate() {
                seen += n;
                if seen >= want {
                    return (i as f64 + 1.0) * 0.1;
                }
            }
            h.len() as f64 * 0.1
        };
        let max = h
            .iter()
            .rposition(|n| *n > 0)
            .map_or(0.0, |i| (i as f64 + 1.0) * 0.1);
        Spread {
            count: total as usize,
            p50_ms: at(0.5),
            p99_ms: at(0.99),
            max_ms: max,
        }
    }
}

/// What a run measured.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Summary {
    pub calls: u64,
    pub elapsed_secs: f64,
    /// Calls started per second, over the run.
    pub rate: f64,
    pub outcomes: std::collections::BTreeMap<String, u64>,
    pub sip_errors: std::collections::BTreeMap<u16, u64>,
    /// For `other-prompt` outcomes: the prompt that ended the attempt (e.g. station-in-use).
    pub other_prompts: std::collections::BTreeMap<String, u64>,
    pub setup: Spread,
    pub result: Spread,
    /// Last key → the peer's BYE, for the calls it hung up after all keys were sent.
    pub hangup: Spread,
    pub rtp_received_per_call: f64,
    pub rtp_received: u64,
    pub rtp_lost: u64,
    pub rtp_out_of_order: u64,
    pub rtp_sent: u64,
    /// SRTP packets received that did not unprotect.
    pub srtp_refused: u64,
    /// |inter-arrival − 20 ms| of consecutive packets (0.1 ms resolution).
    pub rtp_deviation: Spread,
    /// The generator's own media threads: ticks that ran a period or more late, and the
    /// longest stall (ms) between two ticks.
    pub generator_late_ticks: u64,
    pub generator_max_stall_ms: u64,
    /// Each second of the run (by when calls started): how its calls ended and their
    /// slowest setup, to see when and for how long something went wrong.
    pub seconds: Vec<Second>,
}

/// The calls started in one second of the run.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Second {
    /// Seconds from the start of the run.
    pub at: u64,
    pub started: u64,
    pub outcomes: std::collections::BTreeMap<String, u64>,
    /// The slowest INVITE → 200 of the second's answered calls.
    pub setup_max_ms: f64,
}

/// A stall of the generator's media threads longer than this is reported as the generator
/// falling behind (its keys and audio left late).
pub const GENERATOR_STALL_WARN_MS: u64 = 100;

impl Summary {
    /// The seconds that had a call not ending `expect`, or one set up slower than `slow`, as
    /// lines of text.
    pub fn disturbed_seconds(&self, expect: Outcome, slow: Duration) -> Vec<String> {
        let slow_ms = slow.as_secs_f64() * 1000.0;
        self.seconds
            .iter()
            .filter(|sec| {
                sec.setup_max_ms > slow_ms || sec.outcomes.keys().any(|o| o != expect.as_str())
            })
            .map(|sec| {
                let ended: Vec<String> = sec
                    .outcomes
                    .iter()
                    .map(|(o, n)| format!("{n} {o}"))
                    .collect();
                format!(
                    "{:>5} s: {} started, {}; slowest setup {:.0} ms",
                    sec.at,
                    sec.started,
                    ended.join(", "),
                    sec.setup_max_ms
                )
            })
            .collect()
    }

    /// Calls whose outcome is not `expect`.
    pub fn failures(&self, expect: Outcome) -> u64 {
        self.outcomes
            .iter()
            .filter(|(o, _)| o.as_str() != expect.as_str())
            .map(|(_, n)| n)
            .sum()
    }

    pub fn table(&self) -> String {
        let mut s = String::new();
        use std::fmt::Write;
        let _ = writeln!(
            s,
            "calls        {} in {:.1} s (started at {:.1} calls/s)",
            self.calls, self.elapsed_secs, self.rate
        );
        for (o, n) in &self.outcomes {
            let _ = writeln!(s, "  {o:<14} {n}");
            if o == Outcome::OtherPrompt.as_str() {
                for (prompt, n) in &self.other_prompts {
                    let _ = writeln!(s, "    {prompt:<20} {n}");
                }
            }
        }
        for (code, n) in &self.sip_errors {
            let _ = writeln!(s, "  SIP {code:<10} {n}");
        }
        let row = |name: &str, sp: &Spread| {
            format!(
                "{name:<28} p50 {:>8.2} ms  p99 {:>8.2} ms  max {:>8.2} ms  (n={})\n",
                sp.p50_ms, sp.p99_ms, sp.max_ms, sp.count
            )
        };
        s += &row("setup (INVITE → 200)", &self.setup);
        s += &row("result (last key → prompt)", &self.result);
        s += &row("hang-up (last key → BYE)", &self.hangup);
        s += &row("RTP inter-arrival − 20 ms", &self.rtp_deviation);
        let _ = writeln!(
            s,
            "RTP received {} ({:.0} per call), lost {}, out of order {}, SRTP refused {}; sent {}",
            self.rtp_received,
            self.rtp_received_per_call,
            self.rtp_lost,
            self.rtp_out_of_order,
            self.srtp_refused,
            self.rtp_sent
        );
        let _ = writeln!(
            s,
            "generator media ticks late {}, longest stall {} ms{}",
            self.generator_late_ticks,
            self.generator_max_stall_ms,
            if self.generator_max_stall_ms > GENERATOR_STALL_WARN_MS {
                " (THE GENERATOR FELL BEHIND: its keys and audio left late; the figures are not the gateway's alone)"
            } else {
                ""
            }
        );
        s
    }
}

/// Runs the load: calls at `rate` up to `concurrency`, until `calls` or `duration`.
/// `progress` is called about once a second with the shared counters.
pub async fn run(
    opts: LoadOptions,
    mut progress: impl FnMut(&Shared, Duration),
) -> std::io::Result<Summary> {
    let opts = Arc::new(opts);
    let shared = Shared::new(opts.codec)?;
    let permits = Arc::new(tokio::sync::Semaphore::new(opts.concurrency.max(1)));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<CallReport>();
    let started = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / opts.rate.max(0.001));
    let mut next = tokio::time::Instant::now();
    let mut n: u64 = 0;
    let mut reports = Vec::new();
    let mut last_progress = Instant::now();
    let mut starting = Duration::ZERO;
    loop {
        if opts.calls.is_some_and(|c| n >= c)
            || opts.duration.is_some_and(|d| started.elapsed() >= d)
        {
            break;
        }
        tokio::time::sleep_until(next).await;
        next += interval;
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let agent = opts.agents[(n as usize) % opts.agents.len()].clone();
        let (o, s, t) = (opts.clone(), shared.clone(), tx.clone());
        let at = started.elapsed();
        tokio::spawn(async move {
            let mut r = one_call(n, agent, o, s.clone()).await;
            r.started = at;
            s.finished.fetch_add(1, Relaxed);
            drop(permit);
            let _ = t.send(r);
        });
        n += 1;
        starting = started.elapsed();
        while let Ok(r) = rx.try_recv() {
            reports.push(r);
        }
        if last_progress.elapsed() >= Duration::from_secs(1) {
            last_progress = Instant::now();
            progress(&shared, started.elapsed());
        }
    }
    drop(tx);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            r = rx.recv() => match r {
                Some(r) => reports.push(r),
                None => break,
            },
            _ = tick.tick() => progress(&shared, started.elapsed()),
        }
    }
    let elapsed = started.elapsed();
    let mut s = Summary {
        calls: reports.len() as u64,
        elapsed_secs: elapsed.as_secs_f64(),
        rate: if n > 1 {
            (n - 1) as f64 / starting.as_secs_f64().max(1e-9)
        } else {
            n as f64
        },
        setup: Spread::of(reports.iter().filter_map(|r| r.setup).collect()),
        result: Spread::of(reports.iter().filter_map(|r| r.result).collect()),
        hangup: Spread::of(reports.iter().filter_map(|r| r.hangup).collect()),
        rtp_received: shared.metrics.rtp_in.load(Relaxed),
        rtp_lost: shared.media.rtp_lost.load(Relaxed),
        rtp_out_of_order: shared.media.rtp_out_of_order.load(Relaxed),
        rtp_sent: shared.metrics.rtp_out.load(Relaxed),
        srtp_refused: shared.media.srtp_refused.load(Relaxed),
        generator_late_ticks: shared.metrics.media_late_ticks.load(Relaxed),
        generator_max_stall_ms: shared.metrics.media_max_stall_ticks.load(Relaxed) * 20,
        ..Summary::default()
    };
    s.rtp_received_per_call = s.rtp_received as f64 / (s.calls.max(1) as f64);
    let hist: Vec<u64> = shared
        .media
        .deviation
        .iter()
        .map(|a| a.load(Relaxed))
        .collect();
    s.rtp_deviation = Spread::from_histogram(&hist);
    for r in &reports {
        let at = r.started.as_secs();
        if s.seconds.len() <= at as usize {
            s.seconds.resize_with(at as usize + 1, Second::default);
        }
        let sec = &mut s.seconds[at as usize];
        sec.at = at;
        sec.started += 1;
        *sec.outcomes
            .entry(r.outcome.as_str().to_string())
            .or_default() += 1;
        if let Some(setup) = r.setup {
            sec.setup_max_ms = sec.setup_max_ms.max(setup.as_secs_f64() * 1000.0);
        }
        *s.outcomes
            .entry(r.outcome.as_str().to_string())
            .or_default() += 1;
        if let Some(code) = r.sip_status {
            *s.sip_errors.entry(code).or_default() += 1;
        }
        if let (Outcome::OtherPrompt, Some(p)) = (r.outcome, r.prompt) {
            *s.other_prompts.entry(p.as_str().to_string()).or_default() += 1;
        }
    }
    Ok(s)
}

/// Reads `number,passcode` lines (a header line is skipped).
pub fn read_agents_csv(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || (i == 0 && line.starts_with(|c: char| c.is_ascii_alphabetic())) {
            continue;
        }
        let mut f = line.split(',').map(str::trim);
        match (f.next(), f.next()) {
            (Some(n), Some(p)) if !n.is_empty() && !p.is_empty() => {
                out.push((n.to_string(), p.to_string()))
            }
            _ => return Err(format!("line {}: expected number,passcode", i + 1)),
        }
    }
    if out.is_empty() {
        return Err("no agents".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreads() {
        let s = Spread::of((1..=100).map(Duration::from_millis).collect());
        assert_eq!(
            (s.p50_ms.round(), s.p99_ms.round(), s.max_ms),
            (51.0, 99.0, 100.0)
        );
        let mut h = vec![0u64; DEV_BUCKETS];
        h[2] = 99;
        h[40] = 1;
        let s = Spread::from_histogram(&h);
        assert!(
            (s.p50_ms - 0.3).abs() < 1e-9 && (s.p99_ms - 0.3).abs() < 1e-9,
            "{s:?}"
        );
        assert!((s.max_ms - 4.1).abs() < 1e-9);
    }

    #[test]
    fn agents_csv() {
        assert_eq!(
            read_agents_csv("number,passcode\n1001,1234\n1002,2345\n").unwrap(),
            vec![
                ("1001".into(), "1234".into()),
                ("1002".into(), "2345".into())
            ]
        );
        assert!(read_agents_csv("1001\n").is_err());
    }

    #[test]
    fn every_prompt_has_an_outcome_or_is_an_entry_prompt() {
        assert_eq!(
            Outcome::of_prompt(PromptId::AgentLoginOk),
            Some(Outcome::LoggedIn)
        );
        assert_eq!(Outcome::of_prompt(PromptId::AgentUser), None);
        assert_eq!(
            Outcome::of_prompt(PromptId::StationInUse),
            Some(Outcome::OtherPrompt)
        );
    }
}
