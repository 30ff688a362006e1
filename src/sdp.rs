//! SDP offer/answer for one audio stream: PCMU/PCMA, telephone-event at whatever payload type
//! the peer uses, ptime, direction, SRTP keys (SDES, RFC 4568) and the `[media] srtp` policy.
//! Only what a login IVR needs; everything else in a peer's SDP is ignored, never an error.

use crate::media::prompts::Codec;
use crate::media::srtp::{MasterKey, Suite};
pub use crate::media::Negotiated;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

/// Bytes of SDP we are willing to look at.
pub const MAX_SDP_BYTES: usize = 16 * 1024;

/// Why a peer's SDP cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    /// The body is not SDP we can read (answered 400 with a Warning).
    #[error("{0}")]
    Malformed(String),
    /// Readable, but no codec in common (answered 488).
    #[error("no common codec: agentgw offers PCMU and PCMA")]
    NoCommonCodec,
    /// Readable, but no audio stream to take: none offered, or each disabled (port 0) or not
    /// RTP (answered 488).
    #[error("no usable audio stream: {0}")]
    NoAudio(&'static str),
    /// Readable, but its media security is refused by `[media] srtp` (answered 488).
    #[error("{0}")]
    Security(&'static str),
}

impl SdpError {
    /// The SIP status an offer with this fault is refused with.
    pub fn status(&self) -> u16 {
        match self {
            SdpError::Malformed(_) => 400,
            SdpError::NoCommonCodec | SdpError::NoAudio(_) | SdpError::Security(_) => 488,
        }
    }
}

/// Media direction (RFC 3264).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    fn attr(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }
    /// Our side of the answer to a peer's direction.
    pub fn answer(self) -> Direction {
        match self {
            Direction::SendRecv => Direction::SendRecv,
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            Direction::Inactive => Direction::Inactive,
        }
    }
    /// Whether the peer wants to hear us.
    pub fn peer_receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }
}

/// What a peer's SDP says about its audio stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteMedia {
    /// Where the peer wants RTP (address 0.0.0.0 / port 0 means on hold or disabled).
    pub addr: SocketAddr,
    /// Audio payload types in the peer's order of preference that we support.
    pub codecs: Vec<Codec>,
    /// The payload type the peer uses for telephone-event, if it offered it.
    pub telephone_event: Option<u8>,
    /// The payload type of comfort noise (RFC 3389 CN/8000), if the peer offered it.
    pub comfort_noise: Option<u8>,
    pub direction: Direction,
    /// The offer's other media streams, as the answer rejects them (RFC 3264 §6: one m= line
    /// per offered one, in order, port 0): those before the audio stream and those after.
    pub rejected: (Vec<String>, Vec<String>),
    /// The stream is RTP/SAVP (or SAVPF): SRTP or nothing.
    pub secure: bool,
    /// Its `a=crypto` lines of suites agentgw supports, in the peer's order.
    pub crypto: Vec<Crypto>,
}

/// One `a=crypto` line: its tag and the key it carries (or, in our SDP, ours).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crypto {
    pub tag: u32,
    pub key: MasterKey,
}

/// `[media] srtp`: whether calls' audio is encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SrtpPolicy {
    /// Plain RTP only: an SRTP-only offer (RTP/SAVP) is refused.
    Off,
    /// SRTP when the caller offers it over TLS, plain RTP otherwise.
    Offer,
    /// SRTP only, and so only over TLS: anything else is refused.
    Require,
}

/// Most `a=crypto` lines read from one stream.
const MAX_CRYPTO_LINES: usize = 16;

/// The peer's crypto line to answer with, under `policy`, for a call whose signalling came
/// over TLS or not (SDES keys are never taken or sent in clear): Some, SRTP with that key;
/// None, plain RTP; an error, the offer is refused (488).
pub fn choose_crypto(
    policy: SrtpPolicy,
    over_tls: bool,
    remote: &RemoteMedia,
) -> Result<Option<&Crypto>, SdpError> {
    let usable = remote.crypto.first().filter(|_| over_tls);
    match (policy, remote.secure, usable) {
        (SrtpPolicy::Off, true, _) => Err(SdpError::Security(
            "SRTP offered (RTP/SAVP) but [media] srtp = \"off\"",
        )),
        (SrtpPolicy::Off, false, _) => Ok(None),
        (_, true, None) if !over_tls => Err(SdpError::Security(
            "SRTP keys are taken only over SIP over TLS",
        )),
        (_, true, None) => Err(SdpError::Security("no SRTP crypto suite in common")),
        (SrtpPolicy::Require, false, None) => Err(SdpError::Security(
            "[media] srtp = \"require\": plain RTP refused (offer RTP/SAVP over SIP over TLS)",
        )),
        (_, _, Some(c)) => Ok(Some(c)),
        (SrtpPolicy::Offer, false, None) => Ok(None),
    }
}

/// For an INVITE without an offer (ours goes in the 200): whether our offer carries SRTP keys
/// under `policy`, for a call whose signalling came over TLS or not; an error, the call is
/// refused (488).
pub fn late_offer_keys(policy: SrtpPolicy, over_tls: bool) -> Result<bool, SdpError> {
    match (policy, over_tls) {
        (SrtpPolicy::Off, _) => Ok(false),
        (SrtpPolicy::Require, false) => Err(SdpError::Security(
            "[media] srtp = \"require\": SRTP keys are sent only over SIP over TLS",
        )),
        (_, over_tls) => Ok(over_tls),
    }
}

/// The payload type we offer for telephone-event when we make the offer (late offer).
pub const OUR_TELEPHONE_EVENT_PT: u8 = 101;

/// Parses the audio stream of a peer's SDP.
pub fn parse(body: &[u8]) -> Result<RemoteMedia, SdpError> {
    if body.len() > MAX_SDP_BYTES {
        return Err(SdpError::Malformed(format!(
            "SDP of {} bytes is over the {} byte limit",
            body.len(),
            MAX_SDP_BYTES
        )));
    }
    let text = std::str::from_utf8(body)
        .map_err(|_| SdpError::Malformed("SDP is not UTF-8 text".into()))?;
    if !text.trim_start().starts_with("v=") {
        return Err(SdpError::Malformed("SDP does not start with v=".into()));
    }
    let mut session_conn: Option<IpAddr> = None;
    let mut session_dir = Direction::SendRecv;
    let mut audio: Option<AudioSection> = None;
    let mut in_audio = false;
    let mut seen_media = false;
    let mut offered_audio = false;
    let mut rejected: (Vec<String>, Vec<String>) = (Vec::new(), Vec::new());
    for raw in text.lines() {
        let line = raw.trim_end_matches('\r');
        if line.is_empty() {
            continue;
        }
        let (kind, value) = line
            .split_once('=')
            .filter(|(k, _)| k.len() == 1)
            .ok_or_else(|| SdpError::Malformed(format!("line {line:?} is not TYPE=VALUE")))?;
        match kind {
            "m" => {
                seen_media = true;
                in_audio = false;
                let mut section = None;
                if audio.is_none() && value.starts_with("audio ") {
                    offered_audio = true;
                    // A disabled stream (port 0) or one not over RTP is not taken.
                    section = Some(AudioSection::parse_m(value)?).filter(|a| a.port != 0 && a.rtp);
                }
                if section.is_some() {
                    audio = section;
                    in_audio = true;
                } else if rejected.0.len() + rejected.1.len() < 16 {
                    let side = if audio.is_some() {
                        &mut rejected.1
                    } else {
                        &mut rejected.0
                    };
                    side.push(rejected_stream(value));
                }
            }
            "c" => {
                let ip = parse_connection(value)?;
                if in_audio {
                    if let Some(a) = audio.as_mut() {
                        a.conn = Some(ip);
                    }
                } else if !seen_media {
                    session_conn = Some(ip);
                }
            }
            "a" => {
                let dir = match value {
                    "sendrecv" => Some(Direction::SendRecv),
                    "sendonly" => Some(Direction::SendOnly),
                    "recvonly" => Some(Direction::RecvOnly),
                    "inactive" => Some(Direction::Inactive),
                    _ => None,
                };
                match (dir, in_audio, seen_media) {
                    (Some(d), true, _) => {
                        if let Some(a) = audio.as_mut() {
                            a.direction = Some(d);
                        }
                    }
                    (Some(d), false, false) => session_dir = d,
                    (None, true, _) => {
                        if let Some(a) = audio.as_mut() {
                            if let Some(rtpmap) = value.strip_prefix("rtpmap:") {
                                a.rtpmap(rtpmap);
                            } else if let Some(crypto) = value.strip_prefix("crypto:") {
                                a.crypto(crypto);
                            }
                        }
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
    let audio = audio.ok_or(SdpError::NoAudio(if offered_audio {
        "the audio stream is disabled (port 0) or not RTP"
    } else {
        "the offer has no m=audio line"
    }))?;
    let ip = audio
        .conn
        .or(session_conn)
        .ok_or_else(|| SdpError::Malformed("SDP has no c= line for the audio stream".into()))?;
    let codecs: Vec<Codec> = audio
        .payloads
        .iter()
        .filter_map(|&pt| audio.codec_of(pt))
        .collect();
    if codecs.is_empty() {
        return Err(SdpError::NoCommonCodec);
    }
    Ok(RemoteMedia {
        addr: SocketAddr::new(ip, audio.port),
        codecs,
        telephone_event: audio.telephone_event,
        comfort_noise: audio.comfort_noise(),
        direction: audio.direction.unwrap_or(session_dir),
        rejected,
        secure: audio.secure,
        crypto: audio.crypto,
    })
}

/// An offered stream's m= line as an answer rejects it: port 0, its transport and first
/// format kept (RFC 3264 §6).
fn rejected_stream(value: &str) -> String {
    // Each field as SDP's grammar has it (a token; an RTP format is a payload type), or a
    // placeholder: the answer must parse whatever the offer held.
    let token = |s: Option<&str>, extra: &[char], or: &str| -> String {
        let t: String = s
            .unwrap_or_default()
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || extra.contains(c))
            .take(32)
            .collect();
        if t.is_empty() {
            or.into()
        } else {
            t
        }
    };
    let mut parts = value.split_whitespace();
    let media = token(parts.next(), &[], "application");
    let proto = token(parts.nth(1), &['/', '-', '.', '_'], "RTP/AVP");
    let format = parts.next();
    let format = if proto.starts_with("RTP/") {
        format
            .and_then(|f| f.parse::<u8>().ok())
            .filter(|pt| *pt < 128)
            .unwrap_or(0)
            .to_string()
    } else {
        token(format, &['*', '-', '.', '_', '/'], "*")
    };
    format!("{media} 0 {proto} {format}")
}

struct AudioSection {
    port: u16,
    /// Over RTP (RTP/AVP, RTP/AVPF …).
    rtp: bool,
    /// RTP/SAVP or RTP/SAVPF.
    secure: bool,
    crypto: Vec<Crypto>,
    payloads: Vec<u8>,
    names: Vec<(u8, String)>,
    telephone_event: Option<u8>,
    conn: Option<IpAddr>,
    direction: Option<Direction>,
}

impl AudioSection {
    fn parse_m(value: &str) -> Result<AudioSection, SdpError> {
        let mut parts = value.split_whitespace();
        parts.next(); // "audio"
        let port_field = parts
            .next()
            .ok_or_else(|| SdpError::Malformed("m=audio has no port".into()))?;
        let port = port_field
            .split('/')
            .next()
            .and_then(|p| p.parse::<u16>().ok())
            .ok_or_else(|| {
                SdpError::Malformed(format!("m=audio port {port_field:?} is not a number"))
            })?;
        let proto = parts
            .next()
            .ok_or_else(|| SdpError::Malformed("m=audio has no transport".into()))?;
        let rtp = proto.starts_with("RTP/");
        let secure = proto.starts_with("RTP/SAVP");
        // Formats are payload types only over RTP; another transport's are not read.
        let payloads = parts
            .take(if rtp { 64 } else { 0 })
            .map(|p| {
                p.parse::<u8>().ok().filter(|pt| *pt < 128).ok_or_else(|| {
                    SdpError::Malformed(format!("m=audio payload type {p:?} is not 0-127"))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(AudioSection {
            port,
            rtp,
            secure,
            crypto: Vec::new(),
            payloads,
            names: Vec::new(),
            telephone_event: None,
            conn: None,
            direction: None,
        })
    }

    /// `TAG SUITE KEY-PARAMS [SESSION-PARAMS]` (RFC 4568 §9.1); kept when the suite is one
    /// agentgw supports and the key reads (one inline key, no session parameters that change
    /// the packets: UNENCRYPTED_SRTP and the like are not taken).
    fn crypto(&mut self, value: &str) {
        let mut parts = value.split_whitespace();
        let (Some(tag), Some(suite), Some(params)) = (
            parts.next().and_then(|t| t.parse::<u32>().ok()),
            parts.next().and_then(Suite::of),
            parts.next(),
        ) else {
            return;
        };
        if parts.next().is_some() || self.crypto.len() >= MAX_CRYPTO_LINES {
            return;
        }
        if let Some(key) = MasterKey::from_inline(suite, params) {
            self.crypto.push(Crypto { tag, key });
        }
    }

    fn rtpmap(&mut self, value: &str) {
        let mut it = value.splitn(2, ' ');
        let (Some(pt), Some(name)) = (it.next().and_then(|p| p.parse::<u8>().ok()), it.next())
        else {
            return;
        };
        let enc = name.split('/').next().unwrap_or("").to_ascii_lowercase();
        let rate = name.split('/').nth(1).unwrap_or("8000");
        if enc == "telephone-event"
            && rate == "8000"
            && self.payloads.contains(&pt)
            && self.telephone_event.is_none()
        {
            self.telephone_event = Some(pt);
        }
        if self.names.len() < 64 {
            self.names.push((pt, format!("{enc}/{rate}")));
        }
    }

    /// The payload type of CN/8000 among the offered ones (13 is static).
    fn comfort_noise(&self) -> Option<u8> {
        self.payloads.iter().copied().find(|&pt| {
            match self
                .names
                .iter()
                .find(|(p, _)| *p == pt)
                .map(|(_, n)| n.as_str())
            {
                Some(name) => name == "cn/8000",
                None => pt == 13,
            }
        })
    }

    fn codec_of(&self, pt: u8) -> Option<Codec> {
        match self
            .names
            .iter()
            .find(|(p, _)| *p == pt)
            .map(|(_, n)| n.as_str())
        {
            Some("pcmu/8000") => Some(Codec::Pcmu),
            Some("pcma/8000") => Some(Codec::Pcma),
            Some(_) => None,
            None => match pt {
                0 => Some(Codec::Pcmu),
                8 => Some(Codec::Pcma),
                _ => None,
            },
        }
    }
}

fn parse_connection(value: &str) -> Result<IpAddr, SdpError> {
    let mut parts = value.split_whitespace();
    let (net, family, addr) = (parts.next(), parts.next(), parts.next());
    if net != Some("IN") {
        return Err(SdpError::Malformed(format!(
            "c={value} is not an IN address"
        )));
    }
    let addr = addr.ok_or_else(|| SdpError::Malformed(format!("c={value} has no address")))?;
    let addr = addr.split('/').next().unwrap_or(addr);
    let ip: IpAddr = addr
        .parse()
        .map_err(|_| SdpError::Malformed(format!("c= address {addr:?} is not an IP address")))?;
    match (family, ip) {
        (Some("IP4"), IpAddr::V4(_)) | (Some("IP6"), IpAddr::V6(_)) => Ok(ip),
        _ => Err(SdpError::Malformed(format!(
            "c={value}: address family does not match"
        ))),
    }
}

impl RemoteMedia {
    /// What we answer with: the peer's first codec we support, its telephone-event type.
    pub fn negotiate(&self) -> Negotiated {
        Negotiated {
            codec: self.codecs[0],
            telephone_event: self.telephone_event,
            comfort_noise: self.comfort_noise,
        }
    }
}

/// Session version for `o=`; each SDP we send for a call increments it.
#[derive(Debug, Clone, Copy)]
pub struct Origin {
    pub session_id: u64,
    pub version: u64,
}

/// Our SDP answer for a call: its audio stream, between the offer's other streams rejected
/// (`rejected`, from `RemoteMedia`).
/// With `crypto`, our key for the peer's chosen line, under the profile the offer used.
pub fn answer(
    origin: Origin,
    local: SocketAddr,
    media: Negotiated,
    direction: Direction,
    remote: &RemoteMedia,
    crypto: Option<&Crypto>,
) -> String {
    let mut pts = vec![media.codec.payload_type()];
    pts.extend(media.telephone_event);
    pts.extend(media.comfort_noise);
    let security = Security {
        secure: remote.secure,
        crypto: crypto.map(std::slice::from_ref).unwrap_or_default(),
    };
    let audio = body(origin, local, &pts, Some(media), direction, &security);
    let rejected = &remote.rejected;
    if rejected.0.is_empty() && rejected.1.is_empty() {
        return audio;
    }
    let (session, stream) = audio.split_at(audio.find("m=audio").unwrap_or(audio.len()));
    let mut s = session.to_string();
    for m in &rejected.0 {
        let _ = write!(s, "m={m}\r\n");
    }
    s.push_str(stream);
    for m in &rejected.1 {
        let _ = write!(s, "m={m}\r\n");
    }
    s
}

/// Our SDP offer (INVITE without SDP: offer in the 200, answer in the ACK), with `crypto`
/// lines (RTP/SAVP when `secure`, else best-effort SRTP in RTP/AVP).
pub fn offer(origin: Origin, local: SocketAddr, secure: bool, crypto: &[Crypto]) -> String {
    body(
        origin,
        local,
        &[0, 8, OUR_TELEPHONE_EVENT_PT],
        None,
        Direction::SendRecv,
        &Security { secure, crypto },
    )
}

/// The profile and crypto lines of our audio stream.
struct Security<'a> {
    secure: bool,
    crypto: &'a [Crypto],
}

fn body(
    origin: Origin,
    local: SocketAddr,
    pts: &[u8],
    media: Option<Negotiated>,
    dir: Direction,
    security: &Security<'_>,
) -> String {
    let fam = if local.is_ipv4() { "IP4" } else { "IP6" };
    let ip = local.ip();
    let mut s = String::with_capacity(300);
    let _ = write!(
        s,
        "v=0\r\no=agentgw {} {} IN {fam} {ip}\r\ns=agentgw\r\nc=IN {fam} {ip}\r\nt=0 0\r\nm=audio {} RTP/{}",
        origin.session_id,
        origin.version,
        local.port(),
        if security.secure { "SAVP" } else { "AVP" }
    );
    for pt in pts {
        let _ = write!(s, " {pt}");
    }
    s.push_str("\r\n");
    for &pt in pts {
        match pt {
            0 => s.push_str("a=rtpmap:0 PCMU/8000\r\n"),
            8 => s.push_str("a=rtpmap:8 PCMA/8000\r\n"),
            te if Some(te) == media.and_then(|m| m.telephone_event)
                || (media.is_none() && te == OUR_TELEPHONE_EVENT_PT) =>
            {
                let _ = write!(
                    s,
                    "a=rtpmap:{te} telephone-event/8000\r\na=fmtp:{te} 0-16\r\n"
                );
            }
            cn if Some(cn) == media.and_then(|m| m.comfort_noise) => {
                let _ = write!(s, "a=rtpmap:{cn} CN/8000\r\n");
            }
            _ => {}
        }
    }
    for c in security.crypto {
        let _ = write!(
            s,
            "a=crypto:{} {} {}\r\n",
            c.tag,
            c.key.suite.name(),
            c.key.to_inline()
        );
    }
    s.push_str("a=ptime:20\r\n");
    let _ = write!(s, "a={}\r\n", dir.attr());
    s
}

#[cfg(test)]
#[path = "sdp_tests.rs"]
mod tests;
