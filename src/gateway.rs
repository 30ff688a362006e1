//! Wiring and lifecycle: load prompts, open the store, start the media threads and the SIP
//! listeners, run one task per call, shut down.

use crate::admin::GatewayStatus;
use crate::call::{self, CallContext};
use crate::config::{Change, Config};
use crate::limits::{Overload, PacketLimiter};
use crate::media::dtmf::DtmfMethod;
use crate::media::prompts::PromptError;
use crate::media::pump::{MediaPump, PumpSettings};
use crate::media::realtime::watch_runtime;
use crate::media::rtp::PortAllocator;
use crate::sip::{
    AuthSettings, InvalidCounts, ListenAddr, PhoneAccounts, SipError, SipServer, SipSettings,
    TcpConnections, TlsServer,
};
use crate::store::{Store, StoreError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error(transparent)]
    Prompts(#[from] PromptError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Sip(#[from] SipError),
    #[error("{0}")]
    Media(String),
    #[error("TLS: {0}")]
    Tls(String),
}

/// Counts every audit event for `/metrics`.
async fn count_events(
    metrics: Arc<crate::metrics::Metrics>,
    mut events: tokio::sync::broadcast::Receiver<Arc<crate::store::AuditRecord>>,
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        match events.recv().await {
            Ok(e) => metrics.event(&e.event, e.reason.as_deref()),
            Err(RecvError::Lagged(_)) => {}
            Err(RecvError::Closed) => break,
        }
    }
}

/// Ends sessions older than `session_max_hours`, once a minute (a stay line ends its own
/// session at that time; this catches the sessions of lines that hung up after the login).
async fn expire_sessions(store: Store, max_age: Duration) {
    let mut every = tokio::time::interval(Duration::from_secs(60));
    loop {
        every.tick().await;
        match store.expire_sessions(max_age).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(sessions = n, "sessions older than session_max_hours ended"),
            Err(e) => tracing::warn!(error = %e, "could not expire old sessions"),
        }
        if let Err(e) = store.forget_attempts().await {
            tracing::warn!(error = %e, "could not forget old attempt counts");
        }
    }
}

/// Tells the store this node is alive, and closes the stay-line sessions of nodes that are
/// not (each node by one survivor). Only a node that has been beating for a whole timeout
/// judges the others: after the database was away, every node's last beat is old, and the
/// nodes still alive must have had the time to beat again.
async fn keep_alive(store: Store, instance: String, timeout: Duration) {
    let mut every = tokio::time::interval(crate::store::heartbeat_every(timeout));
    let mut beating_since: Option<tokio::time::Instant> = None;
    loop {
        every.tick().await;
        match store.heartbeat(&instance).await {
            Ok(ours) => {
                if !ours {
                    tracing::error!(
                        "this node's heartbeat row was taken over (another gateway with the same \
                         [gateway] node_id, or this node was silent past node_timeout_secs): \
                         registered again"
                    );
                }
                beating_since.get_or_insert_with(tokio::time::Instant::now);
            }
            Err(e) => {
                beating_since = None;
                tracing::warn!(error = %e, "heartbeat not written");
            }
        }
        if beating_since.is_none_or(|t| t.elapsed() < timeout) {
            continue;
        }
        match store.reap_lost_nodes(timeout).await {
            Ok(lost) => {
                for (node, sessions) in lost {
                    tracing::warn!(
                        node,
                        sessions,
                        "node lost (no heartbeat for node_timeout_secs): its stay-line sessions closed"
                    );
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not look for lost nodes"),
        }
    }
}

/// The SIP side's reader of phone accounts: the store's, in `realm`.
fn phone_accounts(store: Store, realm: String) -> PhoneAccounts {
    PhoneAccounts(Arc::new(move |user: String| {
        let (store, realm) = (store.clone(), realm.clone());
        Box::pin(async move {
            store
                .phone_secrets(&user, &realm)
                .await
                .map_err(|e| e.to_string())
        })
    }))
}

/// A running gateway. Dropping it stops the listeners.
pub struct Gateway {
    sip: SipServer,
    ctx: Arc<CallContext>,
    events: crate::events::Events,
    /// The configuration the gateway started with (what runs for the keys a reload cannot
    /// change), and the one of the last reload, for the reload's diff.
    started: Config,
    running: Mutex<Config>,
    overload: Arc<Overload>,
    tcp: Arc<TcpConnections>,
    packets: Arc<PacketLimiter>,
    invalid: Arc<InvalidCounts>,
    /// The TLS listeners' certificate, read again on a reload.
    tls: Option<TlsServer>,
    /// This run's instance among the store's nodes (its heartbeat row).
    instance: String,
    keep_alive: tokio::task::JoinHandle<()>,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.keep_alive.abort();
    }
}

impl Gateway {
    /// Starts everything the config describes; `node_id` names this gateway in sessions.
    pub async fn start(config: &Config, node_id: &str) -> Result<Gateway, GatewayError> {
        let store = Store::open(&config.store.url, node_id).await?;
        Gateway::start_with_store(config, store).await
    }

    /// Starts with an already opened store (the CLI seeds demo agents first).
    pub async fn start_with_store(config: &Config, store: Store) -> Result<Gateway, GatewayError> {
        match store.close_stay_sessions().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                sessions = n,
                "sessions of stay lines held before the restart closed"
            ),
            Err(e) => return Err(e.into()),
        }
        let node_timeout = Duration::from_secs(config.gateway.node_timeout_secs);
        let instance = store.join_nodes(node_timeout).await?;
        let keep_alive = tokio::spawn(keep_alive(store.clone(), instance.clone(), node_timeout));
        let settings = config.call_settings()?;
        let session_max = settings.session_max;
        let metrics: Arc<crate::metrics::Metrics> = Arc::default();
        let overload: Arc<Overload> = Arc::default();
        let pump = MediaPump::start(
            PumpSettings {
                name: "agentgw-media",
                threads: match config.media.threads {
                    0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
                    n => n,
                },
                realtime_priority: config.media.realtime_priority,
            },
            metrics.clone(),
            overload.clone(),
        )
        .map_err(|e| GatewayError::Media(format!("cannot start the media thread: {e}")))?;
        let ctx = Arc::new(CallContext {
            settings: RwLock::new(Arc::new(settings)),
            store,
            pump,
            keys: Arc::default(),
            ports: PortAllocator::new(config.media.rtp_ports),
            metrics,
            lines: Mutex::new(HashMap::new()),
            limiters: Mutex::new(config.attempt_limiters()),
        });
        let tcp: Arc<TcpConnections> = Arc::default();
        tcp.set_limits(
            config.sip.max_tcp_connections,
            config.sip.max_tcp_connections_per_source,
            config.sip.tcp_bytes_per_second(),
        );
        let packets: Arc<PacketLimiter> = Arc::default();
        packets.set_rate(config.sip.max_packets_per_second_per_source);
        let invalid: Arc<InvalidCounts> = Arc::default();
        let tls = match config.sip.tls_files() {
            Some(files) => Some(TlsServer::load(&files).map_err(GatewayError::Tls)?),
            None => None,
        };
        let (sip, mut calls) = SipServer::start(SipSettings {
            listen: config.sip.listen.clone(),
            udp_receive_buffer: config.sip.udp_receive_buffer_kib as usize * 1024,
            max_message_bytes: config.sip.max_message_bytes,
            invalid: invalid.clone(),
            tcp_message_timeout: Duration::from_secs(config.sip.tcp_message_timeout_secs),
            max_calls: config.sip.max_calls,
            max_calls_per_second: config.sip.max_calls_per_second,
            overload: config.sip.refuse_when_overloaded.then(|| overload.clone()),
            tcp: tcp.clone(),
            packets: packets.clone(),
            public_address: config.media.public_address,
            station_from: config.login.station,
            station_header: config.login.station_header.clone(),
            trusted: config.sip.trusted_networks.clone(),
            auth: AuthSettings::new(
                config.sip.authenticate,
                config.sip.realm.clone(),
                config.sip.digest_algorithms.clone(),
                phone_accounts(ctx.store.clone(), config.sip.realm.clone()),
            ),
            tls: tls.clone(),
            call_routes: config.routes(),
        })
        .await?;
        let events = crate::events::Events::start(ctx.store.clone()).await?;
        tokio::spawn(call::drop_ended_lines(ctx.clone(), events.subscribe()));
        tokio::spawn(count_events(ctx.metrics.clone(), events.subscribe()));
        tokio::spawn(expire_sessions(ctx.store.clone(), session_max));
        if ctx.pump.realtime {
            tokio::spawn(watch_runtime(ctx.pump.starvation.clone()));
        }
        let call_ctx = ctx.clone();
        tokio::spawn(async move {
            while let Some((incoming, slot)) = calls.recv().await {
                tokio::spawn(call::run(call_ctx.clone(), incoming, slot));
            }
        });
        Ok(Gateway {
            sip,
            ctx,
            events,
            started: config.clone(),
            running: Mutex::new(config.clone()),
            overload,
            tcp,
            packets,
            invalid,
            tls,
            instance,
            keep_alive,
        })
    }

    /// The SIP listeners, with the ports actually bound.
    pub fn listening(&self) -> &[ListenAddr] {
        &self.sip.listening
    }

    pub fn store(&self) -> &Store {
        &self.ctx.store
    }

    /// Calls in progress.
    pub fn active_calls(&self) -> usize {
        self.sip.calls.get()
    }

    /// Keys received by `method` since start.
    pub fn dtmf_keys(&self, method: DtmfMethod) -> u64 {
        self.ctx.keys.get(method)
    }

    /// SIP dialogs open; zero when no call is up (anything else is a leak).
    pub fn open_dialogs(&self) -> usize {
        self.sip.open_dialogs()
    }

    /// Drains: new calls get 503 at once; calls in progress have up to `drain` to finish
    /// (logins complete); then the rest hear "Goodbye." and get a BYE (a stay line's agent is
    /// logged out), and the listeners stop. Returns the calls that had to be cut.
    pub async fn drain(&self, drain: Duration) -> usize {
        self.sip.drain();
        let deadline = tokio::time::Instant::now() + drain;
        while self.active_calls() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let cut = self.active_calls();
        if cut > 0 {
            call::shut_down_lines(&self.ctx);
            let grace = tokio::time::Instant::now() + Duration::from_secs(5);
            while self.active_calls() > 0 && tokio::time::Instant::now() < grace {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        self.sip.shutdown();
        self.keep_alive.abort();
        if let Err(e) = self.ctx.store.leave_nodes(&self.instance).await {
            tracing::warn!(error = %e, "could not deregister from the store's nodes");
        }
        cut
    }

    /// Applies a new configuration to the calls that start from now on (calls in progress
    /// keep theirs): prompts, login rules, limits, DTMF methods, tenants. Returns every key
    /// that changed, applied or needing a restart (listeners, store, RTP ports, admin listener,
    /// station source, webhooks, logging …), to be logged. A configuration whose prompts do
    /// not load is refused, changing nothing.
    pub fn reload(&self, config: &Config) -> Result<Vec<Change>, GatewayError> {
        let settings = config.call_settings()?;
        // The certificate and key files are read again (a renewed certificate at the same
        // path); new handshakes show them, open connections keep theirs.
        if let (Some(tls), Some(files)) = (&self.tls, config.sip.tls_files()) {
            tls.reload(&files).map_err(GatewayError::Tls)?;
        }
        let running = match self.running.lock() {
            Ok(c) => c.clone(),
            Err(p) => p.into_inner().clone(),
        };
        // Applied keys against what runs now; the others against what the gateway started
        // with, which is what still runs for them.
        let applied = config
            .changes_from(&running)
            .into_iter()
            .filter(|c| c.applied);
        let restart = config
            .changes_from(&self.started)
            .into_iter()
            .filter(|c| !c.applied);
        let changes = applied.chain(restart).collect();
        if let Ok(mut l) = self.ctx.limiters.lock() {
            *l = config.attempt_limiters();
        }
        self.packets
            .set_rate(config.sip.max_packets_per_second_per_source);
        // Connections already open above a lowered limit stay; new ones are counted against it.
        self.tcp.set_limits(
            config.sip.max_tcp_connections,
            config.sip.max_tcp_connections_per_source,
            config.sip.tcp_bytes_per_second(),
        );
        if let Ok(mut s) = self.ctx.settings.write() {
            *s = Arc::new(settings);
        }
        if let Ok(mut c) = self.running.lock() {
            *c = config.clone();
        }
        Ok(changes)
    }

    /// Starts the admin API on `[admin] listen`, with the token of `[admin] token_file` or one
    /// generated into `state_dir`; the address it listens on, and the token file when it was
    /// just generated.
    pub async fn start_admin(
        &self,
        config: &Config,
        state_dir: &std::path::Path,
    ) -> Result<(std::net::SocketAddr, Option<std::path::PathBuf>), crate::admin::AdminError> {
        let (token, created) =
            crate::admin::load_or_create_token(config.admin.token_file.as_deref(), state_dir)?;
        let addr = crate::admin::start(crate::admin::AdminSetup {
            listen: config.admin.listen,
            token,
            store: self.ctx.store.clone(),
            status: self.status(),
            metrics: self.ctx.metrics.clone(),
            events: self.events.clone(),
            webhooks: config.webhook.clone(),
            new_agents_must_change: config.login.new_agents_must_change,
        })
        .await?;
        Ok((addr, created))
    }

    /// What the service status line reads, without holding the gateway.
    pub fn status(&self) -> GatewayStatus {
        GatewayStatus {
            calls: self.sip.calls.clone(),
            store: self.ctx.store.clone(),
            draining: self.sip.draining_flag(),
            calls_ctx: self.ctx.clone(),
            overload: self.overload.clone(),
            tcp: self.tcp.clone(),
            packets: self.packets.clone(),
            invalid: self.invalid.clone(),
        }
    }

    /// Stops taking calls.
    pub fn shutdown(&self) {
        self.sip.shutdown();
    }
}
