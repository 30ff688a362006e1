//! One call's RTP line: the frames it sends (prompts, comfort noise), the packets it reads
//! (latching, strict RTP) and the keys found in them (RFC 4733 and in-band). The media pump
//! drives it every 20 ms; the call's task sets what to play and takes what was found.

use crate::media::dtmf::inband::InbandDetector;
use crate::media::dtmf::rfc4733::EventReceiver;
use crate::media::dtmf::{Digit, DtmfMethod};
use crate::media::g711;
use crate::media::player::Player;
use crate::media::poll::SocketSet;
use crate::media::prompts::{Codec, EncodedPrompt, Frame, PromptId, FRAME_SAMPLES};
use crate::media::pump::{Batch, Pumped, Tally, RECV_BATCH};
use crate::media::rtp::{self, RemoteTarget, RtpWriter, MAX_RTP_PACKET};
use crate::media::srtp;
use crate::media::Negotiated;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// One call's RTP, shared between the call's task and the media pump.
pub struct CallMedia {
    line: Mutex<Line>,
    /// Wakes the call's task when a prompt finished or a key was detected.
    wake: tokio::sync::Notify,
    /// Set when the call's task is done; the pump then drops the line (closing its socket).
    ended: AtomicBool,
}

impl CallMedia {
    /// A line on `socket` (bound, non-blocking), silent until `set_active`; `inband` looks for
    /// in-band tones, `strict` drops packets from other sources once one is learned.
    pub fn new(socket: std::net::UdpSocket, inband: bool, strict: bool) -> Arc<CallMedia> {
        Arc::new(CallMedia {
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
                inband: inband.then(InbandDetector::new),
                finished: Vec::new(),
                keys: Vec::new(),
                strict,
                sent: 0,
                received: 0,
                foreign: 0,
                heard: 0,
                srtp: None,
                forged: 0,
            }),
            wake: tokio::sync::Notify::new(),
            ended: AtomicBool::new(false),
        })
    }

    fn line(&self) -> MutexGuard<'_, Line> {
        match self.line.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Applies the peer's SDP: the codec kept if still offered (else the peer's first of
    /// `codecs`), its telephone-event and CN types, where to send, and whether it listens.
    pub fn apply_remote(
        &self,
        codecs: &[Codec],
        telephone_event: Option<u8>,
        comfort_noise: Option<u8>,
        addr: SocketAddr,
        peer_receives: bool,
    ) {
        let mut line = self.line();
        let keep = line
            .negotiated
            .filter(|n| codecs.contains(&n.codec))
            .map(|n| n.codec);
        let Some(codec) = keep.or(codecs.first().copied()) else {
            return;
        };
        line.negotiated = Some(Negotiated {
            codec,
            telephone_event,
            comfort_noise,
        });
        line.player.set_codec(codec);
        match line.target.as_mut() {
            Some(t) => t.on_sdp(addr),
            None => line.target = Some(RemoteTarget::new(addr)),
        }
        line.peer_receives = peer_receives;
    }

    /// Protects what is sent and unprotects what is read with these SRTP contexts from now
    /// on (None: plain RTP).
    pub fn set_srtp(&self, srtp: Option<(srtp::Sender, srtp::Receiver)>) {
        self.line().srtp = srtp.map(Box::new);
    }

    /// SRTP packets dropped so far: forged, altered or replayed.
    pub fn srtp_refused(&self) -> u64 {
        self.line().forged
    }

    /// The media agreed with the peer, once known.
    pub fn negotiated(&self) -> Option<Negotiated> {
        self.line().negotiated
    }

    /// Frames go out (the call started) or stop.
    pub fn set_active(&self, active: bool) {
        self.line().active = active;
    }

    /// The caller hung up: nothing more is sent or heard.
    pub fn hang_up(&self) {
        let mut line = self.line();
        line.active = false;
        line.hears_keys = false;
    }

    /// Starts playing `prompt` (replacing what plays).
    pub fn play(&self, id: PromptId, prompt: Arc<EncodedPrompt>) {
        self.line().player.play(id, prompt);
    }

    /// Stops the prompt playing, if any.
    pub fn stop_prompt(&self) {
        self.line().player.stop();
    }

    /// Keeps a key that came another way (SIP INFO before the ACK) with the line's own.
    pub fn hold_key(&self, d: Digit, method: DtmfMethod) {
        self.line().hold_key(d, method);
    }

    /// Swaps out the prompts that finished, and (when `keys` is given) the keys found, since
    /// the last call; swapping, so that neither side allocates.
    pub fn take(&self, finished: &mut Vec<PromptId>, keys: Option<&mut Vec<(Digit, DtmfMethod)>>) {
        let mut line = self.line();
        std::mem::swap(&mut line.finished, finished);
        if let Some(keys) = keys {
            std::mem::swap(&mut line.keys, keys);
        }
    }

    /// Swaps out the keys found since the last call.
    pub fn take_keys(&self, keys: &mut Vec<(Digit, DtmfMethod)>) {
        std::mem::swap(&mut self.line().keys, keys);
    }

    /// RTP packets taken from the caller since the call began.
    pub fn heard(&self) -> u64 {
        self.line().heard
    }

    /// Resolves when the pump found a key or finished a prompt since the last wake-up.
    pub async fn woken(&self) {
        self.wake.notified().await
    }
}

impl Pumped for CallMedia {
    fn watch(self: &Arc<Self>, set: &mut SocketSet<Self>) -> std::io::Result<()> {
        let line = self.line();
        set.insert(self.clone(), &line.socket)
    }

    fn receive(&self, batch: &mut Batch, _tick: u64, tally: &mut Tally) {
        let mut line = self.line();
        let mut found = false;
        let mut read = 0;
        while read < MAX_PACKETS_PER_TICK {
            let n = match batch.recv(&line.socket) {
                Ok(n) => n,
                Err(e) => {
                    tracing::debug!(error = %e, "RTP receive failed");
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
        tally.received += std::mem::take(&mut line.received);
        tally.foreign += std::mem::take(&mut line.foreign);
        drop(line);
        if found {
            self.wake.notify_one();
        }
    }

    fn send(&self, ticks: std::ops::RangeInclusive<u64>, tally: &mut Tally) {
        let mut line = self.line();
        if !line.active {
            return;
        }
        let mut done = false;
        for _ in ticks {
            if let Some(p) = line.tick() {
                line.finished.push(p);
                done = true;
            }
        }
        tally.sent += std::mem::take(&mut line.sent);
        drop(line);
        if done {
            self.wake.notify_one();
        }
    }

    fn ended(&self) -> bool {
        self.ended.load(Ordering::Acquire)
    }

    fn end(&self) {
        self.ended.store(true, Ordering::Release);
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
    finished: Vec<PromptId>,
    /// Keys found, for the call's task (at most `MAX_PENDING_KEYS`).
    keys: Vec<(Digit, DtmfMethod)>,
    /// Strict RTP (`[media] strict_rtp`): once the source is learned, drop other sources.
    strict: bool,
    /// RTP packets sent, received, and dropped as from another source (strict RTP), since
    /// the last flush to the process counters.
    sent: u64,
    received: u64,
    foreign: u64,
    /// RTP packets taken from the caller since the call began (its liveness).
    heard: u64,
    /// SRTP: what protects our packets and unprotects the peer's.
    srtp: Option<Box<(srtp::Sender, srtp::Receiver)>>,
    /// SRTP packets dropped: forged, altered, replayed or malformed.
    forged: u64,
}

/// Sends `pkt` to `to`, protected first when the line is SRTP (in a buffer on the stack: no
/// allocation); whether it went.
pub fn send_rtp(
    socket: &std::net::UdpSocket,
    srtp: Option<&mut (srtp::Sender, srtp::Receiver)>,
    pkt: &[u8],
    to: SocketAddr,
) -> bool {
    let Some((sender, _)) = srtp else {
        return socket.send_to(pkt, to).is_ok();
    };
    let mut buf = [0u8; MAX_RTP_PACKET + 16];
    match sender.protect_into(pkt, &mut buf) {
        Some(srtp) => socket.send_to(srtp, to).is_ok(),
        None => false,
    }
}

/// The RTP packet in `data` as received: unprotected into `buf` when the line is SRTP (None
/// when it does not unprotect: forged, altered, replayed or malformed), else `data` itself.
pub fn received_rtp<'a>(
    srtp: Option<&mut (srtp::Sender, srtp::Receiver)>,
    data: &'a [u8],
    buf: &'a mut [u8],
) -> Option<&'a [u8]> {
    match srtp {
        None => Some(data),
        Some((_, receiver)) => receiver.unprotect_into(data, buf).ok(),
    }
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

impl Line {
    /// Sends one 20 ms frame (or just advances time when there is nowhere to send it) and
    /// returns the prompt that finished with it.
    fn tick(&mut self) -> Option<PromptId> {
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
                    if send_rtp(&self.socket, self.srtp.as_deref_mut(), pkt, to) {
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
                if send_rtp(&self.socket, self.srtp.as_deref_mut(), pkt, to) {
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
        // SRTP: authenticated (and not a replay) before anything else, the source latched to
        // included, so that a forged packet moves nothing.
        let mut plain = [0u8; MAX_RTP_PACKET + 16];
        let Some(data) = received_rtp(self.srtp.as_deref_mut(), data, &mut plain) else {
            self.forged += 1;
            return false;
        };
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
        self.heard += 1;
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
