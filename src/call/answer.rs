//! A call's SDP side: the RTP socket it answers with, its offer or answer, the SRTP keys of
//! both sides, and the answers to later offers. Everything per packet lives in `media::line`,
//! driven by the media pump.

use super::CallContext;
use crate::limits::RefusalLog;
use crate::media::line::CallMedia;
use crate::media::srtp::{self, MasterKey, Suite};
use crate::sdp::{self, Crypto, Origin, RemoteMedia, SdpError, SrtpPolicy};
use crate::sip::IncomingCall;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use tracing::warn;

/// What the call's task keeps of its media.
pub(super) struct Media {
    local: SocketAddr,
    origin: Origin,
    pub line: Arc<CallMedia>,
    /// `[media] srtp`, and whether the call's signalling came over TLS.
    policy: SrtpPolicy,
    over_tls: bool,
    /// Our SRTP keys: the one answered with (one line), or those of our offer (a late offer).
    ours: Vec<Crypto>,
    /// The peer's key in use, to tell a re-key from the same key offered again.
    theirs: Option<MasterKey>,
}

impl Media {
    /// A line on a port of the range for `call`, with the SDP to answer with; None when no
    /// port is free (logged once a second at most).
    pub fn open(
        ctx: &CallContext,
        call: &IncomingCall,
        inband: bool,
        strict: bool,
    ) -> Option<(Media, String)> {
        let policy = call.srtp;
        let any = match call.local_ip {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        };
        let socket = match ctx.ports.bind(any) {
            Ok(s) => s,
            Err(e) => {
                // When the ports run out, every new call comes here.
                static NO_PORT: Mutex<RefusalLog> = Mutex::new(RefusalLog::new());
                let log = NO_PORT
                    .lock()
                    .ok()
                    .and_then(|mut l| l.refused(std::time::Instant::now()));
                if let Some(refused) = log {
                    warn!(error = %e, refused, "calls refused: no RTP port (one line a second at most)");
                }
                return None;
            }
        };
        let port = socket.local_addr().map_or(0, |a| a.port());
        let mut media = Media {
            local: SocketAddr::new(call.local_ip, port),
            origin: Origin {
                session_id: rand::random::<u32>() as u64,
                version: 1,
            },
            line: CallMedia::new(socket, inband, strict),
            policy,
            over_tls: call.over_tls,
            ours: Vec::new(),
            theirs: None,
        };
        let sdp = match &call.offer {
            // The SIP side refused an offer the policy refuses (488) before the call began.
            Some(offer) => match media.answer(offer) {
                Ok(sdp) => sdp,
                Err(e) => {
                    warn!(reason = %e, "offer refused by [media] srtp");
                    return None;
                }
            },
            None => {
                // The SIP side refused a late offer the policy refuses.
                if matches!(sdp::late_offer_keys(policy, call.over_tls), Ok(true)) {
                    media.ours = Suite::ALL
                        .iter()
                        .zip(1..)
                        .map(|(&suite, tag)| Crypto {
                            tag,
                            key: MasterKey::generate(suite),
                        })
                        .collect();
                }
                let secure = policy == SrtpPolicy::Require;
                sdp::offer(media.origin, media.local, secure, &media.ours)
            }
        };
        Some((media, sdp))
    }

    /// Takes the peer's offer, or refuses it under the policy; our answer.
    fn answer(&mut self, remote: &RemoteMedia) -> Result<String, SdpError> {
        let chosen = sdp::choose_crypto(self.policy, self.over_tls, remote)?;
        Ok(self.take(remote, chosen))
    }

    /// Takes the peer's offer: its media, and its SRTP key `chosen` (with ours made once and
    /// kept for the call, so that a re-INVITE with the same key changes nothing); our answer.
    fn take(&mut self, remote: &RemoteMedia, chosen: Option<&Crypto>) -> String {
        match chosen {
            Some(c) => {
                let ours = match self.ours.first() {
                    Some(o) if o.key.suite == c.key.suite => o.key.clone(),
                    _ => MasterKey::generate(c.key.suite),
                };
                let fresh = self.theirs.as_ref() != Some(&c.key)
                    || self.ours.first().is_none_or(|o| o.key != ours);
                if fresh {
                    self.line.set_srtp(Some((
                        srtp::Sender::new(&ours),
                        srtp::Receiver::new(&c.key),
                    )));
                }
                self.theirs = Some(c.key.clone());
                self.ours = vec![Crypto {
                    tag: c.tag,
                    key: ours,
                }];
            }
            None => {
                self.line.set_srtp(None);
                self.theirs = None;
                self.ours.clear();
            }
        }
        self.apply_remote(remote);
        self.sdp_for(remote)
    }

    fn apply_remote(&self, remote: &RemoteMedia) {
        self.line.apply_remote(
            &remote.codecs,
            remote.telephone_event,
            remote.comfort_noise,
            remote.addr,
            remote.direction.peer_receives(),
        );
    }

    fn sdp_for(&self, remote: &RemoteMedia) -> String {
        let n = self.line.negotiated().unwrap_or(remote.negotiate());
        sdp::answer(
            self.origin,
            self.local,
            n,
            remote.direction.answer(),
            remote,
            self.ours.first(),
        )
    }

    /// Takes the answer a late-offer call's ACK carries (unless the media is already agreed):
    /// with SRTP, the peer's key on the line of one of our tags.
    pub fn on_ack(&mut self, body: &[u8]) -> Result<(), SdpError> {
        if self.line.negotiated().is_some() {
            return Ok(());
        }
        let remote = sdp::parse(body)?;
        let agreed = remote.crypto.iter().find_map(|theirs| {
            let ours = self.ours.iter().find(|o| o.tag == theirs.tag)?;
            (ours.key.suite == theirs.key.suite).then(|| (ours.clone(), theirs.key.clone()))
        });
        match agreed {
            Some((ours, theirs)) => {
                self.line.set_srtp(Some((
                    srtp::Sender::new(&ours.key),
                    srtp::Receiver::new(&theirs),
                )));
                self.ours = vec![ours];
                self.theirs = Some(theirs);
            }
            None if self.policy == SrtpPolicy::Require => {
                return Err(SdpError::Security(
                    "the answer has no SRTP key of our offer",
                ))
            }
            None => self.ours.clear(),
        }
        self.apply_remote(&remote);
        Ok(())
    }

    /// Answers a re-INVITE's offer (hold, a move of the media, new keys), a new SDP version.
    pub fn reoffer(&mut self, offer: &[u8]) -> Result<String, SdpError> {
        let remote = sdp::parse(offer)?;
        // Refused before anything changes.
        let chosen = sdp::choose_crypto(self.policy, self.over_tls, &remote)?;
        self.origin.version += 1;
        Ok(self.take(&remote, chosen))
    }
}
