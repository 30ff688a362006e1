//! What every call shares (the settings of the moment, the store, the RTP ports, the media
//! pump, the lines up, the attempt limiters) and the settings a call keeps to its end.

use super::Lines;
use crate::limits::SourceLimiter;
use crate::login::route::Routes;
use crate::login::FlowConfig;
use crate::media::dtmf::{DtmfCounters, DtmfMethod};
use crate::media::line::CallMedia;
use crate::media::prompts::Catalog;
use crate::media::pump::MediaPump;
use crate::media::rtp::PortAllocator;
use crate::store::{LoginPolicy, Store};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

/// What a SIGHUP can change: each call takes the settings current when it starts and keeps
/// them to its end.
#[derive(Debug)]
pub struct Settings {
    /// The prompts of every language in use, by language.
    pub catalogs: HashMap<String, Catalog>,
    /// Which tenant, language and policies a number dialed gets.
    pub routes: Routes,
    /// Strict RTP (`[media] strict_rtp`).
    pub strict_rtp: bool,
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
    /// A stay line silent (no RTP) this long is probed; None: never.
    pub line_timeout: Option<Duration>,
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
    pub pump: MediaPump<CallMedia>,
    /// Keys received, by method, for `/metrics`.
    pub keys: Arc<DtmfCounters>,
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
    /// Limits of `station` and `source` attempts a minute (0: none).
    pub fn new(station: u32, source: u32) -> AttemptLimiters {
        AttemptLimiters {
            station: SourceLimiter::new(station),
            source: SourceLimiter::new(source),
        }
    }

    /// Counts an attempt; false when the station or the source is over its limit.
    pub(super) fn allow(&mut self, station: &str, source: IpAddr) -> bool {
        let now = std::time::Instant::now();
        let by_station = self.station.allow(station, now);
        let by_source = self.source.allow(&source.to_string(), now);
        by_station && by_source
    }
}
