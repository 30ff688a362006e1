//! A call's SDP side: the RTP socket it answers with, its offer or answer, and the answers to
//! later offers. Everything per packet lives in `media::line`, driven by the media pump.

use super::CallContext;
use crate::limits::RefusalLog;
use crate::media::line::CallMedia;
use crate::sdp::{self, Origin, RemoteMedia, SdpError};
use crate::sip::IncomingCall;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use tracing::warn;

/// What the call's task keeps of its media.
pub(super) struct Media {
    local: SocketAddr,
    origin: Origin,
    pub line: Arc<CallMedia>,
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
        let media = Media {
            local: SocketAddr::new(call.local_ip, port),
            origin: Origin {
                session_id: rand::random::<u32>() as u64,
                version: 1,
            },
            line: CallMedia::new(socket, inband, strict),
        };
        let sdp = match &call.offer {
            Some(offer) => {
                media.apply_remote(offer);
                media.sdp_for(offer)
            }
            None => sdp::offer(media.origin, media.local),
        };
        Some((media, sdp))
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
            &remote.rejected,
        )
    }

    /// Takes the answer a late-offer call's ACK carries (unless the media is already agreed).
    pub fn on_ack(&self, body: &[u8]) -> Result<(), SdpError> {
        if self.line.negotiated().is_none() {
            self.apply_remote(&sdp::parse(body)?);
        }
        Ok(())
    }

    /// Answers a re-INVITE's offer (hold, a move of the media), a new SDP version.
    pub fn reoffer(&mut self, offer: &[u8]) -> Result<String, SdpError> {
        let remote = sdp::parse(offer)?;
        self.apply_remote(&remote);
        self.origin.version += 1;
        Ok(self.sdp_for(&remote))
    }
}
