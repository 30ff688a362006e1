//! SRTP (RFC 3711) with keys exchanged in SDP (SDES, RFC 4568): AES_CM_128_HMAC_SHA1_80 and
//! _32, and AEAD_AES_128_GCM (RFC 7714). Session keys derived from a master key, packets
//! protected and unprotected in place (no allocation per packet), the rollover counter
//! followed, and replays refused within a 64-packet window. RTCP is neither sent nor read.

use aes::cipher::{InnerIvInit, KeyInit, KeyIvInit, StreamCipher};
use aes::Aes128;
use aes_gcm::aead::AeadInPlace;
use aes_gcm::Aes128Gcm;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;

type Aes128Ctr = ctr::Ctr128BE<Aes128>;

/// A crypto suite of RFC 4568 / RFC 7714.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suite {
    AesCm128HmacSha1_80,
    AesCm128HmacSha1_32,
    AeadAes128Gcm,
}

impl Suite {
    /// Every suite, in agentgw's order of preference when it makes the offer.
    pub const ALL: [Suite; 3] = [
        Suite::AeadAes128Gcm,
        Suite::AesCm128HmacSha1_80,
        Suite::AesCm128HmacSha1_32,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Suite::AesCm128HmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
            Suite::AesCm128HmacSha1_32 => "AES_CM_128_HMAC_SHA1_32",
            Suite::AeadAes128Gcm => "AEAD_AES_128_GCM",
        }
    }

    pub fn of(name: &str) -> Option<Suite> {
        Suite::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The master salt's length: 14 bytes, 12 for GCM.
    fn salt_len(self) -> usize {
        match self {
            Suite::AeadAes128Gcm => 12,
            _ => 14,
        }
    }

    /// Bytes an SRTP packet has beyond its RTP packet: the authentication tag.
    pub fn overhead(self) -> usize {
        match self {
            Suite::AesCm128HmacSha1_80 => 10,
            Suite::AesCm128HmacSha1_32 => 4,
            Suite::AeadAes128Gcm => 16,
        }
    }
}

/// A master key and salt (the `inline:` key of an `a=crypto` line).
#[derive(Clone, PartialEq, Eq)]
pub struct MasterKey {
    pub suite: Suite,
    key: [u8; 16],
    /// The salt, `suite.salt_len()` bytes of it.
    salt: [u8; 14],
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MasterKey({})", self.suite.name()) // never the key
    }
}

impl MasterKey {
    /// A new random master key for `suite`.
    pub fn generate(suite: Suite) -> MasterKey {
        let mut salt: [u8; 14] = rand::random();
        salt[suite.salt_len()..].fill(0);
        MasterKey {
            suite,
            key: rand::random(),
            salt,
        }
    }

    /// From a key-params value `inline:BASE64[|lifetime][|MKI:len]`; None when it is not one
    /// key and salt of the suite's length, or uses an MKI (not supported).
    pub fn from_inline(suite: Suite, params: &str) -> Option<MasterKey> {
        let rest = params.strip_prefix("inline:")?;
        let mut parts = rest.split('|');
        let b64 = parts.next()?;
        // A lifetime may follow; an MKI (`n:len`) is not taken.
        if parts.any(|p| p.contains(':')) {
            return None;
        }
        let mut raw = [0u8; 32];
        let n = base64::engine::general_purpose::STANDARD
            .decode_slice(b64, &mut raw)
            .ok()?;
        let salt_len = suite.salt_len();
        if n != 16 + salt_len {
            return None;
        }
        let mut key = MasterKey {
            suite,
            key: [0; 16],
            salt: [0; 14],
        };
        key.key.copy_from_slice(&raw[..16]);
        key.salt[..salt_len].copy_from_slice(&raw[16..n]);
        Some(key)
    }

    /// `inline:BASE64` of this key and salt.
    pub fn to_inline(&self) -> String {
        let mut raw = [0u8; 30];
        raw[..16].copy_from_slice(&self.key);
        let n = 16 + self.suite.salt_len();
        raw[16..n].copy_from_slice(&self.salt[..n - 16]);
        format!(
            "inline:{}",
            base64::engine::general_purpose::STANDARD.encode(&raw[..n])
        )
    }

    /// The session key of `label` (RFC 3711 §4.3.1, key derivation rate 0): AES-CM of the
    /// master key over (salt XOR label at byte 7) · 2^16, `out.len()` bytes of it. A 12-byte
    /// GCM salt is taken with two zero bytes after it, as libsrtp does.
    fn derive(&self, label: u8, out: &mut [u8]) {
        let mut iv = [0u8; 16];
        iv[..14].copy_from_slice(&self.salt);
        iv[7] ^= label;
        out.fill(0);
        Aes128Ctr::new(&self.key.into(), &iv.into()).apply_keystream(out);
    }
}

/// Session keys of one direction.
#[derive(Clone)]
enum Keys {
    Cm {
        cipher: Aes128,
        salt: [u8; 14],
        /// Keyed once; cloned for each packet.
        mac: Hmac<Sha1>,
        tag: usize,
    },
    Gcm {
        aead: Aes128Gcm,
        salt: [u8; 12],
    },
}

impl Keys {
    fn of(master: &MasterKey) -> Keys {
        let mut cipher_key = [0u8; 16];
        master.derive(0, &mut cipher_key);
        match master.suite {
            Suite::AeadAes128Gcm => {
                let mut salt = [0u8; 12];
                master.derive(2, &mut salt);
                Keys::Gcm {
                    aead: Aes128Gcm::new(&cipher_key.into()),
                    salt,
                }
            }
            suite => {
                let mut auth = [0u8; 20];
                master.derive(1, &mut auth);
                let mut salt = [0u8; 14];
                master.derive(2, &mut salt);
                Keys::Cm {
                    cipher: Aes128::new(&cipher_key.into()),
                    salt,
                    mac: <Hmac<Sha1> as Mac>::new_from_slice(&auth).expect("any key length"),
                    tag: suite.overhead(),
                }
            }
        }
    }
}

/// The RTP header's length (fixed part, CSRCs, extension), its SSRC and sequence number.
fn header(packet: &[u8]) -> Option<(usize, u32, u16)> {
    if packet.len() < 12 || packet[0] >> 6 != 2 {
        return None;
    }
    let mut len = 12 + 4 * usize::from(packet[0] & 0x0f);
    if packet[0] & 0x10 != 0 {
        let ext = packet.get(len + 2..len + 4)?;
        len += 4 + 4 * usize::from(u16::from_be_bytes([ext[0], ext[1]]));
    }
    if len > packet.len() {
        return None;
    }
    let ssrc = u32::from_be_bytes(packet[8..12].try_into().ok()?);
    Some((len, ssrc, u16::from_be_bytes([packet[2], packet[3]])))
}

/// Encrypts (or decrypts) `payload` with AES-CM for packet `index` of `ssrc`.
fn cm_apply(cipher: &Aes128, salt: &[u8; 14], ssrc: u32, index: u64, payload: &mut [u8]) {
    let mut iv = [0u8; 16];
    iv[..14].copy_from_slice(salt);
    for (b, s) in iv[4..8].iter_mut().zip(ssrc.to_be_bytes()) {
        *b ^= s;
    }
    for (b, s) in iv[8..14].iter_mut().zip(&index.to_be_bytes()[2..]) {
        *b ^= s;
    }
    // AES-CM is AES-CTR with this IV (a payload is far under 2^16 blocks, so the 128-bit
    // counter never carries past the 16 bits RFC 3711 gives it); the key schedule is copied,
    // not expanded again.
    let core =
        ctr::CtrCore::<Aes128, ctr::flavors::Ctr128BE>::inner_iv_init(cipher.clone(), &iv.into());
    Aes128Ctr::from_core(core).apply_keystream(payload);
}

/// The GCM nonce of packet `index` of `ssrc` (RFC 7714 §8.1).
fn gcm_nonce(salt: &[u8; 12], ssrc: u32, index: u64) -> [u8; 12] {
    let mut iv = [0u8; 12];
    iv[2..6].copy_from_slice(&ssrc.to_be_bytes());
    iv[6..12].copy_from_slice(&index.to_be_bytes()[2..]);
    for (b, s) in iv.iter_mut().zip(salt) {
        *b ^= s;
    }
    iv
}

/// Protects the RTP packets one side sends.
#[derive(Clone)]
pub struct Sender {
    keys: Keys,
    suite: Suite,
    roc: u32,
    last_seq: Option<u16>,
}

impl Sender {
    pub fn new(master: &MasterKey) -> Sender {
        Sender {
            keys: Keys::of(master),
            suite: master.suite,
            roc: 0,
            last_seq: None,
        }
    }

    /// Protects a copy of the RTP packet `pkt` made in `buf`: the SRTP packet, or None when
    /// `buf` has no room for it and its tag or it is not RTP.
    pub fn protect_into<'a>(&mut self, pkt: &[u8], buf: &'a mut [u8]) -> Option<&'a [u8]> {
        buf.get_mut(..pkt.len())?.copy_from_slice(pkt);
        let len = self.protect(buf, pkt.len())?;
        Some(&buf[..len])
    }

    /// Protects the RTP packet in `buf[..len]` in place, appending its tag; the SRTP
    /// packet's length, or None when `buf` has no room for the tag or it is not RTP.
    pub fn protect(&mut self, buf: &mut [u8], len: usize) -> Option<usize> {
        let out = len + self.suite.overhead();
        if buf.len() < out {
            return None;
        }
        let (hlen, ssrc, seq) = header(&buf[..len])?;
        if self
            .last_seq
            .is_some_and(|last| seq < last && last - seq > 0x8000)
        {
            self.roc = self.roc.wrapping_add(1);
        }
        self.last_seq = Some(seq);
        let index = (u64::from(self.roc) << 16) | u64::from(seq);
        match &self.keys {
            Keys::Cm {
                cipher,
                salt,
                mac,
                tag,
            } => {
                cm_apply(cipher, salt, ssrc, index, &mut buf[hlen..len]);
                let mut m = mac.clone();
                m.update(&buf[..len]);
                m.update(&self.roc.to_be_bytes());
                let full = m.finalize().into_bytes();
                buf[len..out].copy_from_slice(&full[..*tag]);
            }
            Keys::Gcm { aead, salt } => {
                let nonce = gcm_nonce(salt, ssrc, index);
                let (head, rest) = buf.split_at_mut(hlen);
                let tag = aead
                    .encrypt_in_place_detached(&nonce.into(), head, &mut rest[..len - hlen])
                    .ok()?;
                buf[len..out].copy_from_slice(&tag);
            }
        }
        Some(out)
    }
}

/// Why a received packet was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Not an RTP packet, or too short for its tag.
    Malformed,
    /// Its tag does not match: not from the holder of the key, or altered.
    Forged,
    /// Its index was seen, or is older than the window.
    Replayed,
}

/// Unprotects the SRTP packets one side receives.
#[derive(Clone)]
pub struct Receiver {
    keys: Keys,
    suite: Suite,
    roc: u32,
    /// The highest sequence number taken, once one was.
    s_l: Option<u16>,
    /// Bit n set: the packet of index `highest - n` was taken.
    window: u64,
}

impl Receiver {
    pub fn new(master: &MasterKey) -> Receiver {
        Receiver {
            keys: Keys::of(master),
            suite: master.suite,
            roc: 0,
            s_l: None,
            window: 0,
        }
    }

    /// The rollover counter a packet with `seq` belongs to (RFC 3711 §3.3.1).
    fn guess_roc(&self, seq: u16) -> u32 {
        match self.s_l {
            None => self.roc,
            Some(s_l) if s_l < 0x8000 && seq > s_l && seq - s_l > 0x8000 => {
                self.roc.wrapping_sub(1)
            }
            Some(s_l) if s_l >= 0x8000 && s_l - 0x8000 > seq => self.roc.wrapping_add(1),
            Some(_) => self.roc,
        }
    }

    /// Unprotects a copy of the SRTP packet `data` made in `buf`: the RTP packet, or why it
    /// was dropped (Malformed when it does not fit in `buf`).
    pub fn unprotect_into<'a>(
        &mut self,
        data: &[u8],
        buf: &'a mut [u8],
    ) -> Result<&'a [u8], Refused> {
        let copy = buf.get_mut(..data.len()).ok_or(Refused::Malformed)?;
        copy.copy_from_slice(data);
        let len = self.unprotect(copy)?;
        Ok(&buf[..len])
    }

    /// Unprotects the SRTP packet in `buf` in place: the RTP packet's length, or why it was
    /// dropped. Nothing is remembered of a packet that fails.
    pub fn unprotect(&mut self, buf: &mut [u8]) -> Result<usize, Refused> {
        let tag_len = self.suite.overhead();
        let len = buf.len().checked_sub(tag_len).ok_or(Refused::Malformed)?;
        let (hlen, ssrc, seq) = header(&buf[..len]).ok_or(Refused::Malformed)?;
        let roc = self.guess_roc(seq);
        let index = (u64::from(roc) << 16) | u64::from(seq);
        let highest = self.s_l.map(|s| (u64::from(self.roc) << 16) | u64::from(s));
        let delta = highest.map(|h| index as i64 - h as i64);
        if let Some(d) = delta {
            if d <= -64 || (d <= 0 && self.window & (1u64 << (-d) as u32) != 0) {
                return Err(Refused::Replayed);
            }
        }
        match &self.keys {
            Keys::Cm {
                cipher, salt, mac, ..
            } => {
                let mut m = mac.clone();
                m.update(&buf[..len]);
                m.update(&roc.to_be_bytes());
                let full = m.finalize().into_bytes();
                let want = &full[..tag_len];
                let got = &buf[len..];
                if want.iter().zip(got).fold(0u8, |a, (x, y)| a | (x ^ y)) != 0 {
                    return Err(Refused::Forged);
                }
                cm_apply(cipher, salt, ssrc, index, &mut buf[hlen..len]);
            }
            Keys::Gcm { aead, salt } => {
                let nonce = gcm_nonce(salt, ssrc, index);
                let (head, rest) = buf.split_at_mut(hlen);
                let (payload, tag) = rest.split_at_mut(len - hlen);
                aead.decrypt_in_place_detached(
                    &nonce.into(),
                    head,
                    payload,
                    aes_gcm::Tag::from_slice(tag),
                )
                .map_err(|_| Refused::Forged)?;
            }
        }
        match delta {
            Some(d) if d > 0 => {
                self.window = if d >= 64 { 0 } else { self.window << d };
                self.window |= 1;
                self.s_l = Some(seq);
                self.roc = roc;
            }
            Some(d) => self.window |= 1u64 << (-d) as u32,
            None => {
                self.window = 1;
                self.s_l = Some(seq);
                self.roc = roc;
            }
        }
        Ok(len)
    }
}

#[cfg(test)]
#[path = "srtp_tests.rs"]
mod tests;
