//! SDP offer/answer for one audio stream: PCMU/PCMA, telephone-event at whatever payload type
//! the peer uses, ptime, direction. Only what a login IVR needs; everything else in a peer's SDP
//! is ignored, never an error.

use crate::media::prompts::Codec;
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
}

impl SdpError {
    /// The SIP status an offer with this fault is refused with.
    pub fn status(&self) -> u16 {
        match self {
            SdpError::Malformed(_) => 400,
            SdpError::NoCommonCodec | SdpError::NoAudio(_) => 488,
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
                        if let (Some(a), Some(rtpmap)) =
                            (audio.as_mut(), value.strip_prefix("rtpmap:"))
                        {
                            a.rtpmap(rtpmap);
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
            payloads,
            names: Vec::new(),
            telephone_event: None,
            conn: None,
            direction: None,
        })
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
pub fn answer(
    origin: Origin,
    local: SocketAddr,
    media: Negotiated,
    direction: Direction,
    rejected: &(Vec<String>, Vec<String>),
) -> String {
    let mut pts = vec![media.codec.payload_type()];
    pts.extend(media.telephone_event);
    pts.extend(media.comfort_noise);
    let audio = body(origin, local, &pts, Some(media), direction);
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

/// Our SDP offer (INVITE without SDP: offer in the 200, answer in the ACK).
pub fn offer(origin: Origin, local: SocketAddr) -> String {
    body(
        origin,
        local,
        &[0, 8, OUR_TELEPHONE_EVENT_PT],
        None,
        Direction::SendRecv,
    )
}

fn body(
    origin: Origin,
    local: SocketAddr,
    pts: &[u8],
    media: Option<Negotiated>,
    dir: Direction,
) -> String {
    let fam = if local.is_ipv4() { "IP4" } else { "IP6" };
    let ip = local.ip();
    let mut s = String::with_capacity(300);
    let _ = write!(
        s,
        "v=0\r\no=agentgw {} {} IN {fam} {ip}\r\ns=agentgw\r\nc=IN {fam} {ip}\r\nt=0 0\r\nm=audio {} RTP/AVP",
        origin.session_id,
        origin.version,
        local.port()
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
    s.push_str("a=ptime:20\r\n");
    let _ = write!(s, "a={}\r\n", dir.attr());
    s
}

#[cfg(test)]
#[path = "sdp_tests.rs"]
mod tests;
