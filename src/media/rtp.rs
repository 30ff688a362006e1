//! RTP: a socket per call from the configured port range, symmetric RTP (send to where the
//! caller's RTP comes from once it arrives), and a packet writer with the sequence numbers,
//! timestamps, SSRC and marker bit a phone checks. No allocation per packet.

use serde::Deserialize;
use std::io;
use std::net::UdpSocket;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};

/// Largest RTP packet read; anything longer is truncated and ignored by the parsers.
pub const MAX_RTP_PACKET: usize = 1500;

/// An inclusive port range, `20000-29999`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub low: u16,
    pub high: u16,
}

impl FromStr for PortRange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not LOW-HIGH with 1024 <= LOW < HIGH <= 65535");
        let (l, h) = s.split_once('-').ok_or_else(bad)?;
        let low: u16 = l.trim().parse().map_err(|_| bad())?;
        let high: u16 = h.trim().parse().map_err(|_| bad())?;
        if low < 1024 || high <= low {
            return Err(bad());
        }
        Ok(PortRange { low, high })
    }
}

impl<'de> Deserialize<'de> for PortRange {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Hands out even RTP ports from the configured range, round robin.
#[derive(Debug)]
pub struct PortAllocator {
    range: PortRange,
    /// Where the next search starts, so a port just freed is not reused at once.
    next: AtomicU32,
}

impl PortAllocator {
    pub fn new(range: PortRange) -> PortAllocator {
        let start = rand::random::<u32>() % u32::from(range.high - range.low + 1);
        PortAllocator {
            range,
            next: AtomicU32::new(start),
        }
    }

    /// Binds a non-blocking UDP socket on `ip` at the next free even port of the range.
    pub fn bind(&self, ip: IpAddr) -> io::Result<UdpSocket> {
        let low = u32::from(self.range.low.div_ceil(2) * 2);
        let count = (u32::from(self.range.high) + 1 - low) / 2;
        if count == 0 {
            return Err(io::Error::new(
                io::ErrorKind::AddrNotAvailable,
                "RTP port range holds no even port",
            ));
        }
        for _ in 0..count.min(256) {
            let n = self.next.fetch_add(1, Ordering::Relaxed) % count;
            let port = (low + n * 2) as u16;
            match UdpSocket::bind(SocketAddr::new(ip, port)) {
                Ok(s) => {
                    s.set_nonblocking(true)?;
                    return Ok(s);
                }
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => continue,
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "no free RTP port in the configured range",
        ))
    }
}

/// Writes outgoing RTP packets of one stream into a reused buffer.
#[derive(Debug)]
pub struct RtpWriter {
    ssrc: u32,
    seq: u16,
    timestamp: u32,
    /// The first packet of the stream carries the marker bit (start of a talkspurt).
    marker: bool,
    buf: [u8; 12 + 160],
}

impl Default for RtpWriter {
    fn default() -> Self {
        RtpWriter {
            ssrc: rand::random(),
            seq: rand::random(),
            timestamp: rand::random(),
            marker: true,
            buf: [0; 172],
        }
    }
}

impl RtpWriter {
    /// Builds the next packet carrying `payload` (at most 160 bytes) and advances the stream by
    /// `samples` timestamp units.
    pub fn packet(&mut self, payload_type: u8, payload: &[u8], samples: u32) -> &[u8] {
        let len = payload.len().min(160);
        self.buf[0] = 0x80;
        self.buf[1] = (payload_type & 0x7F) | if self.marker { 0x80 } else { 0 };
        self.buf[2..4].copy_from_slice(&self.seq.to_be_bytes());
        self.buf[4..8].copy_from_slice(&self.timestamp.to_be_bytes());
        self.buf[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
        self.buf[12..12 + len].copy_from_slice(&payload[..len]);
        self.marker = false;
        self.seq = self.seq.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(samples);
        &self.buf[..12 + len]
    }

    /// Sets the marker bit on the next packet (the start of a talkspurt after silence).
    pub fn mark_next(&mut self) {
        self.marker = true;
    }

    /// Advances the timestamp without sending (time passed with nothing to send).
    pub fn skip(&mut self, samples: u32) {
        self.timestamp = self.timestamp.wrapping_add(samples);
    }

    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// The timestamp the next packet will carry.
    pub fn timestamp(&self) -> u32 {
        self.timestamp
    }
}

/// One received RTP packet's fields that matter here.
#[derive(Debug, Clone, Copy)]
pub struct RtpHeader {
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub marker: bool,
}

/// Parses an RTP packet; `None` for anything that is not RTP version 2.
pub fn parse(packet: &[u8]) -> Option<(RtpHeader, &[u8])> {
    let r = rtp_rs::RtpReader::new(packet).ok()?;
    Some((
        RtpHeader {
            payload_type: r.payload_type(),
            sequence: u16::from(r.sequence_number()),
            timestamp: r.timestamp(),
            ssrc: r.ssrc(),
            marker: r.mark(),
        },
        r.payload(),
    ))
}

/// Where to send a call's RTP: the SDP address until the caller's own RTP arrives, then the
/// address it came from (symmetric RTP, for phones behind NAT). A new SDP with the same
/// address (a session refresh) keeps the latch; one with another address (the media moved)
/// or none (hold) starts over from it. With strict RTP, once latched, packets from any other
/// address are not the call's (see `admit`).
#[derive(Debug, Clone, Copy)]
pub struct RemoteTarget {
    pub addr: Option<SocketAddr>,
    /// The address of the last SDP.
    sdp: SocketAddr,
    latched: bool,
}

impl RemoteTarget {
    pub fn new(sdp_addr: SocketAddr) -> RemoteTarget {
        RemoteTarget {
            addr: usable(sdp_addr),
            sdp: sdp_addr,
            latched: false,
        }
    }

    /// Follows a new SDP (re-INVITE, UPDATE, a late offer's answer).
    pub fn on_sdp(&mut self, sdp_addr: SocketAddr) {
        if !self.latched || sdp_addr != self.sdp || usable(sdp_addr).is_none() {
            self.addr = usable(sdp_addr);
            self.latched = false;
        }
        self.sdp = sdp_addr;
    }

    /// Whether a packet from `source` is the caller's: the first one after the SDP latches
    /// the target to its source (learning); after that, with `strict`, only packets from the
    /// latched address are (strict RTP, as Asterisk's `strictrtp`: a third party who finds
    /// the port cannot key digits into someone else's login or talk into the line). A new SDP
    /// address starts the learning again.
    pub fn admit(&mut self, source: SocketAddr, strict: bool) -> bool {
        if !self.latched {
            self.on_packet_from(source);
            return true;
        }
        !strict || self.addr == Some(source)
    }

    /// Latches to the source of the first packet received; returns true when it changed.
    pub fn on_packet_from(&mut self, source: SocketAddr) -> bool {
        if self.latched {
            return false;
        }
        self.latched = true;
        let changed = self.addr != Some(source);
        self.addr = Some(source);
        changed
    }
}

fn usable(addr: SocketAddr) -> Option<SocketAddr> {
    (!addr.ip().is_unspecified() && addr.port() != 0).then_some(addr)
}

impl std::fmt::Display for PortRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.low, self.high)
    }
}

impl serde::Serialize for PortRange {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
#[path = "rtp_tests.rs"]
mod tests;
