//! A simulated phone's media, driven by the gateway's own media pump (every phone's RTP sent
//! and read every 20 ms by one thread per core, so no phone has a timer or a task wake-up per
//! packet): the keys it sends, the prompts it recognises, the speech that is not agentgw's.
//! Arrival times come from the kernel (`SO_TIMESTAMPNS`): the inter-arrival deviation is that
//! of the packets on the wire, not of when this busy process got round to them.

use super::{PromptIndex, DEV_BUCKETS, TE_PT};
use agentgw::media::dtmf::{rfc4733, Digit};
use agentgw::media::g711;
use agentgw::media::line::{received_rtp, send_rtp};
use agentgw::media::player::PTIME;
use agentgw::media::poll::SocketSet;
use agentgw::media::prompts::{Codec, PromptId, FRAME_SAMPLES};
use agentgw::media::pump::{Batch, Pumped, Tally, RECV_BATCH};
use agentgw::media::rtp::{self, RtpWriter, MAX_RTP_PACKET};
use agentgw::media::srtp;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What every phone's media shares: the prompts to recognise and what the counts of the
/// packets heard.
pub(super) struct Hearing {
    pub index: PromptIndex,
    pub rtp_lost: AtomicU64,
    pub rtp_out_of_order: AtomicU64,
    /// SRTP packets that did not unprotect (forged, altered, replayed, or keyed wrong).
    pub srtp_refused: AtomicU64,
    /// Inter-arrival deviation of back-to-back frames, in 0.1 ms buckets.
    pub deviation: Vec<AtomicU64>,
}

impl Hearing {
    pub fn new(index: PromptIndex) -> Hearing {
        Hearing {
            index,
            rtp_lost: AtomicU64::new(0),
            rtp_out_of_order: AtomicU64::new(0),
            srtp_refused: AtomicU64::new(0),
            deviation: (0..DEV_BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn deviation(&self, d: Duration) {
        let i = ((d.as_micros() / 100) as usize).min(DEV_BUCKETS - 1);
        self.deviation[i].fetch_add(1, Relaxed);
    }
}

/// The keys of one entry being sent: per digit 3 event packets, 3 end packets, 2 ticks gap.
pub(super) struct Keying {
    digits: Vec<Digit>,
    pos: usize,
    phase: u8,
    /// The tick to start at.
    start: u64,
}

impl Keying {
    pub(super) fn new(keys: &str, start: u64) -> Keying {
        Keying {
            digits: keys.chars().filter_map(Digit::from_char).collect(),
            pos: 0,
            phase: 0,
            start,
        }
    }
}

/// A prompt heard: which, when its first packet arrived, and at which tick.
#[derive(Debug, Clone, Copy)]
pub(super) struct Heard {
    pub prompt: PromptId,
    pub arrival: Duration,
    pub tick: u64,
}

/// A stretch of speech that is not agentgw's prompts (another IVR's prompt), reported once
/// `QUIET_TICKS` of silence followed it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Spoken {
    /// When its first voice packet arrived (since the Unix epoch).
    pub arrival: Duration,
}

/// Mean |sample| of a frame above which it is speech rather than silence or line noise
/// (about −45 dBov).
const VOICE_LEVEL: u32 = 180;
/// Voice frames a stretch needs to count as a prompt (a click is not one).
const MIN_VOICE_FRAMES: u32 = 5;
/// Ticks without speech (silence or noise frames, comfort noise, no packets) that end a
/// stretch: 700 ms, longer than the pause between a prompt's sentences.
pub(super) const QUIET_TICKS: u64 = 35;

/// Whether a G.711 frame is speech: its mean level is over `VOICE_LEVEL`.
fn is_voice(codec: Codec, payload: &[u8]) -> bool {
    let decode = match codec {
        Codec::Pcmu => g711::ulaw_to_linear,
        Codec::Pcma => g711::alaw_to_linear,
    };
    let sum: u32 = payload
        .iter()
        .map(|&b| u32::from(decode(b).unsigned_abs()))
        .sum();
    sum > VOICE_LEVEL * payload.len() as u32
}

/// One phone's RTP, shared by its call task and a media thread.
pub(super) struct Phone {
    line: Mutex<Line>,
    hearing: Arc<Hearing>,
    /// Wakes the call task when an agentgw prompt starts or another IVR's speech ends.
    pub wake: tokio::sync::Notify,
    ended: AtomicBool,
}

impl Phone {
    pub fn new(
        socket: std::net::UdpSocket,
        codec: Codec,
        send_audio: bool,
        hearing: Arc<Hearing>,
    ) -> Arc<Phone> {
        Arc::new(Phone {
            hearing,
            line: Mutex::new(Line {
                socket,
                remote: None,
                writer: RtpWriter::default(),
                codec,
                send_audio,
                keying: VecDeque::with_capacity(2),
                last_seq: None,
                last_ts: 0,
                last_arrival: None,
                received: 0,
                last_prompt: None,
                heard: Vec::new(),
                last_key_at: None,
                speaking: None,
                last_voice_tick: 0,
                spoken: Vec::new(),
                srtp: None,
            }),
            wake: tokio::sync::Notify::new(),
            ended: AtomicBool::new(false),
        })
    }

    pub fn line(&self) -> MutexGuard<'_, Line> {
        match self.line.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }
}

/// The per-packet state of one phone.
pub(super) struct Line {
    socket: std::net::UdpSocket,
    /// Where to send (from the answer's SDP); nothing goes out before.
    pub remote: Option<SocketAddr>,
    writer: RtpWriter,
    codec: Codec,
    send_audio: bool,
    /// Entries to key, in order; an entry waits for the one before it to finish.
    pub keying: VecDeque<Keying>,
    last_seq: Option<u16>,
    /// The RTP timestamp of the last packet.
    last_ts: u32,
    last_arrival: Option<Duration>,
    pub received: u64,
    last_prompt: Option<PromptId>,
    /// Prompts heard since the call task last looked.
    pub heard: Vec<Heard>,
    /// When the first packet of the last key of an entry went out (since the Unix epoch).
    pub last_key_at: Option<Duration>,
    /// Speech that is not agentgw's being heard: when its first voice frame arrived and how
    /// many voice frames so far.
    speaking: Option<(Duration, u32)>,
    /// The tick of the last voice frame.
    last_voice_tick: u64,
    /// Stretches of speech that is not agentgw's that ended since the call task last looked.
    pub spoken: Vec<Spoken>,
    /// SRTP, once the answer gave the gateway's key: what protects ours and unprotects its.
    pub srtp: Option<Box<(srtp::Sender, srtp::Receiver)>>,
}

impl Line {
    /// One received packet; true when a new prompt started with it.
    fn on_packet(&mut self, data: &[u8], arrival: Duration, tick: u64, shared: &Hearing) -> bool {
        let mut plain = [0u8; MAX_RTP_PACKET + 16];
        let Some(data) = received_rtp(self.srtp.as_deref_mut(), data, &mut plain) else {
            shared.srtp_refused.fetch_add(1, Relaxed);
            return false;
        };
        let Some((hdr, payload)) = rtp::parse(data) else {
            return false;
        };
        self.received += 1;
        if let Some(last) = self.last_seq {
            let delta = hdr.sequence.wrapping_sub(last);
            if delta == 0 || delta > 0x8000 {
                shared.rtp_out_of_order.fetch_add(1, Relaxed);
                return false;
            }
            if delta > 1 {
                shared.rtp_lost.fetch_add(u64::from(delta - 1), Relaxed);
            }
            // Only back-to-back frames (one packet later, 160 samples later) are 20 ms
            // apart; comfort noise (a packet per 200 ms) and the first frame after it are
            // not.
            let frame_later = hdr.timestamp.wrapping_sub(self.last_ts) == FRAME_SAMPLES as u32;
            if let (1, true, Some(prev)) = (delta, frame_later, self.last_arrival) {
                shared.deviation(arrival.saturating_sub(prev).abs_diff(PTIME));
            }
        }
        self.last_seq = Some(hdr.sequence);
        self.last_ts = hdr.timestamp;
        self.last_arrival = Some(arrival);
        if hdr.payload_type != self.codec.payload_type() || payload.len() != FRAME_SAMPLES {
            return false;
        }
        match shared.index.find(payload) {
            Some((p, _)) if Some(p) != self.last_prompt => {
                self.last_prompt = Some(p);
                self.heard.push(Heard {
                    prompt: p,
                    arrival,
                    tick,
                });
                true
            }
            Some(_) => false,
            None => {
                if payload != self.codec.silence() && is_voice(self.codec, payload) {
                    self.speaking.get_or_insert((arrival, 0)).1 += 1;
                    self.last_voice_tick = tick;
                }
                false
            }
        }
    }

    /// When the stretch of speech (not agentgw's) being heard began, if one is.
    pub fn speaking_since(&self) -> Option<Duration> {
        self.speaking.map(|(arrival, _)| arrival)
    }

    /// One tick: ends a stretch of speech after `QUIET_TICKS` without (true: the call task
    /// has a `Spoken` to look at), then sends.
    fn tick(&mut self, tick: u64, tally: &mut Tally) -> bool {
        let mut spoke = false;
        if let Some((arrival, frames)) = self.speaking {
            if tick >= self.last_voice_tick + QUIET_TICKS {
                self.speaking = None;
                if frames >= MIN_VOICE_FRAMES {
                    self.spoken.push(Spoken { arrival });
                    spoke = true;
                }
            }
        }
        self.send(tick, tally);
        spoke
    }

    /// The next key packet, else a silence frame when sending audio.
    fn send(&mut self, tick: u64, tally: &mut Tally) {
        let Some(to) = self.remote else {
            return;
        };
        if let Some(k) = self.keying.front_mut().filter(|k| tick >= k.start) {
            if k.phase < 6 {
                let d = k.digits[k.pos];
                let end = k.phase >= 3;
                let payload = rfc4733::encode(d, end, 160 * (u16::from(k.phase.min(3)) + 1));
                let pkt = self.writer.packet(TE_PT, &payload, 0);
                if send_rtp(&self.socket, self.srtp.as_deref_mut(), pkt, to) {
                    tally.sent += 1;
                }
                // The moment a gateway counts the last key of the entry.
                if k.phase == 0 && k.pos + 1 == k.digits.len() {
                    self.last_key_at = Some(since_epoch());
                }
                if k.phase == 5 {
                    self.writer.skip(160 * 6);
                    if k.pos + 1 == k.digits.len() {
                        self.keying.pop_front();
                        return;
                    }
                }
                k.phase += 1;
                return;
            }
            k.phase += 1;
            if k.phase == 8 {
                k.phase = 0;
                k.pos += 1;
            }
        }
        if self.send_audio {
            let pkt = self.writer.packet(
                self.codec.payload_type(),
                self.codec.silence(),
                FRAME_SAMPLES as u32,
            );
            if send_rtp(&self.socket, self.srtp.as_deref_mut(), pkt, to) {
                tally.sent += 1;
            }
        }
    }
}

pub(super) fn since_epoch() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

impl Pumped for Phone {
    fn watch(self: &Arc<Self>, set: &mut SocketSet<Self>) -> std::io::Result<()> {
        let line = self.line();
        set.insert(self.clone(), &line.socket)
    }

    fn receive(&self, batch: &mut Batch, tick: u64, tally: &mut Tally) {
        let mut line = self.line();
        let mut started = false;
        let before = line.received;
        loop {
            let n = batch.recv(&line.socket).unwrap_or(0);
            for i in 0..n {
                let (data, _) = batch.packet(i);
                let arrival = batch.arrival(i).unwrap_or_else(since_epoch);
                started |= line.on_packet(data, arrival, tick, &self.hearing);
            }
            if n < RECV_BATCH {
                break;
            }
        }
        tally.received += line.received - before;
        drop(line);
        if started {
            self.wake.notify_one();
        }
    }

    fn send(&self, ticks: RangeInclusive<u64>, tally: &mut Tally) {
        let mut line = self.line();
        let mut spoke = false;
        for t in ticks {
            spoke |= line.tick(t, tally);
        }
        drop(line);
        if spoke {
            self.wake.notify_one();
        }
    }

    fn ended(&self) -> bool {
        self.ended.load(Relaxed)
    }

    fn end(&self) {
        self.ended.store(true, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Another IVR's prompt is speech: a tone at -25 dBov is, digital silence and line noise
    /// at about -60 dBov are not; a stretch ends 700 ms after its last voice frame, and a
    /// click (under 100 ms) is no prompt.
    #[test]
    fn speech_that_is_not_agentgw_is_told_from_silence_and_ends_after_700_ms() {
        let frame = |amplitude: f64| -> Vec<u8> {
            (0..FRAME_SAMPLES)
                .map(|i| {
                    let v =
                        amplitude * (i as f64 * 2.0 * std::f64::consts::PI * 440.0 / 8000.0).sin();
                    g711::linear_to_ulaw(v as i16)
                })
                .collect()
        };
        for codec in [Codec::Pcmu, Codec::Pcma] {
            let encode = |f: Vec<u8>| -> Vec<u8> {
                f.iter()
                    .map(|&u| codec.encode(g711::ulaw_to_linear(u)))
                    .collect()
            };
            assert!(is_voice(codec, &encode(frame(2000.0))), "{codec:?}");
            assert!(!is_voice(codec, &encode(frame(30.0))), "{codec:?}");
            assert!(!is_voice(codec, codec.silence()), "{codec:?}");
        }
        let shared = Arc::new(Hearing::new(PromptIndex::new(Codec::Pcmu)));
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let phone = Phone::new(socket, Codec::Pcmu, false, shared.clone());
        let mut line = phone.line.lock().unwrap();
        let mut w = RtpWriter::default();
        let voice = frame(2000.0);
        let mut feed = |line: &mut Line, tick: u64| {
            let pkt = w.packet(0, &voice, 160).to_vec();
            line.on_packet(&pkt, Duration::from_millis(tick * 20), tick, &shared);
        };
        // A click: 3 frames, then quiet.
        for t in 0..3 {
            feed(&mut line, t);
        }
        assert!(!(3..3 + QUIET_TICKS + 5).any(|t| line.tick(t, &mut Tally::default())));
        // A prompt: 50 frames (1 s) from tick 100; its end is reported 35 ticks after.
        for t in 100..150 {
            feed(&mut line, t);
            assert!(!line.tick(t, &mut Tally::default()));
        }
        assert_eq!(line.speaking_since(), Some(Duration::from_millis(2000)));
        let ended: Vec<u64> = (150..250)
            .filter(|&t| line.tick(t, &mut Tally::default()))
            .collect();
        assert_eq!(ended, vec![149 + QUIET_TICKS]);
        assert_eq!(line.spoken.len(), 1);
        assert_eq!(line.spoken[0].arrival, Duration::from_millis(2000));
        assert_eq!(line.speaking_since(), None);
    }

    /// Inter-arrival deviation is measured between back-to-back frames only: the 200 ms
    /// between comfort-noise packets, and the gap before the talkspurt after them, are not
    /// late packets.
    #[test]
    fn comfort_noise_gaps_are_not_deviation() {
        let shared = Arc::new(Hearing::new(PromptIndex::new(Codec::Pcmu)));
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let phone = Phone::new(socket, Codec::Pcmu, false, shared.clone());
        let mut line = phone.line.lock().unwrap();
        let mut w = RtpWriter::default();
        let ms = Duration::from_millis;
        let silence = [0xFFu8; FRAME_SAMPLES];
        // Two frames 20 ms apart, then comfort noise every 200 ms, then audio again.
        let mut feed = |pt: u8, payload: &[u8], skip: u32, at: Duration| {
            let pkt = w.packet(pt, payload, 160).to_vec();
            w.skip(skip);
            line.on_packet(&pkt, at, 0, &shared);
        };
        feed(0, &silence, 0, ms(0));
        feed(0, &silence, 0, ms(21));
        feed(13, &[78], 1440, ms(41));
        feed(13, &[78], 1440, ms(240));
        feed(0, &silence, 0, ms(440));
        feed(0, &silence, 0, ms(460));
        let buckets: Vec<u64> = shared.deviation.iter().map(|b| b.load(Relaxed)).collect();
        // Measured: frame → frame (1 ms late), frame → first CN (on time), frame → frame.
        assert_eq!(buckets.iter().sum::<u64>(), 3, "{buckets:?}");
        assert_eq!(buckets[10], 1, "the 21 ms gap: 1 ms late");
        assert_eq!(buckets[0], 2, "the 20 ms gaps: on time");
        assert_eq!(shared.rtp_lost.load(Relaxed), 0);
    }
}
