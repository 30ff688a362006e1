//! The admin listener (axum): the status page, the REST API with its OpenAPI document, the
//! event stream, `/metrics`, and the health probes. A bearer token guards everything but the
//! probes and the page itself (a static file that shows nothing until given the token).

mod api;
pub mod webhooks;

use crate::call::CallContext;
use crate::events::Events;
use crate::limits::{Overload, PacketLimiter};
use crate::media::dtmf::DtmfMethod;
use crate::metrics::{Gauges, Metrics};
use crate::sip::{CallCounter, TcpConnections};
use crate::store::Store;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use std::net::SocketAddr;
use std::path::{Path as FsPath, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tracing::warn;

/// Why the admin listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("admin token file {file}: {reason}")]
    Token { file: String, reason: String },
    #[error("cannot listen for the admin API on {listen}: {reason}")]
    Listen { listen: SocketAddr, reason: String },
}

/// What the handlers share.
#[derive(Clone)]
pub(crate) struct AdminState {
    store: Store,
    status: GatewayStatus,
    /// The bearer token every API call must carry.
    token: Arc<String>,
    metrics: Arc<Metrics>,
    events: Events,
    /// `[login] new_agents_must_change`, for agents created by the API.
    new_agents_must_change: bool,
    /// Event streams open at once at most (`MAX_EVENT_STREAMS`).
    streams: Arc<tokio::sync::Semaphore>,
}

/// Event streams (`GET /api/events`) open at once at most; past it, 503.
pub const MAX_EVENT_STREAMS: usize = 64;

/// What the admin listener (and systemd's STATUS line) reads of the running gateway: calls
/// in progress, agents logged on, whether it drains, and the counters of the parts that admit
/// calls and packets, for `/metrics`.
#[derive(Debug, Clone)]
pub struct GatewayStatus {
    pub calls: CallCounter,
    pub store: Store,
    pub draining: Arc<std::sync::atomic::AtomicBool>,
    /// The calls' shared state: the keys received, the tenants of the settings of the moment.
    pub calls_ctx: Arc<CallContext>,
    pub overload: Arc<Overload>,
    pub tcp: Arc<TcpConnections>,
    pub packets: Arc<PacketLimiter>,
    pub invalid: Arc<crate::sip::InvalidCounts>,
}

impl GatewayStatus {
    /// Whether the gateway has stopped taking calls (SIGTERM).
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// (calls in progress, agents logged on in every tenant).
    pub async fn snapshot(&self) -> (usize, usize) {
        (
            self.calls.get(),
            self.store.count_sessions().await.unwrap_or(0),
        )
    }

    /// Whether `tenant` is the default or a configured one (as of the last reload).
    pub fn has_tenant(&self, tenant: &str) -> bool {
        self.calls_ctx.settings().routes.has_tenant(tenant)
    }

    /// The gauges of `/metrics`.
    async fn gauges(&self) -> Gauges {
        let (calls, sessions) = self.snapshot().await;
        Gauges {
            calls,
            sessions,
            by_status: self.store.sessions_by_status().await.unwrap_or_default(),
            dtmf_keys: DtmfMethod::ALL
                .iter()
                .map(|&m| (m.as_str(), self.calls_ctx.keys.get(m)))
                .collect(),
            overloaded: self.overload.active(std::time::Instant::now()),
            calls_refused_overloaded: self.overload.refused.load(Ordering::Relaxed),
            tcp_open: self.tcp.open(),
            tcp_refused: self.tcp.refused.load(Ordering::Relaxed),
            tcp_shut_down: self.tcp.shut_down_total.load(Ordering::Relaxed),
            tcp_too_slow: self.tcp.too_slow_total.load(Ordering::Relaxed),
            tls_failed: self.tcp.tls_failed.load(Ordering::Relaxed),
            sip_packets_dropped: self.packets.dropped.load(Ordering::Relaxed),
            sip_invalid: self.invalid.get(),
        }
    }
}

/// What the admin listener is started with.
pub struct AdminSetup {
    pub listen: SocketAddr,
    pub token: String,
    pub store: Store,
    pub status: GatewayStatus,
    pub metrics: Arc<Metrics>,
    pub events: Events,
    pub webhooks: Vec<webhooks::WebhookConfig>,
    pub new_agents_must_change: bool,
}

/// The admin token: read from `token_file` when configured, else generated once into
/// `state_dir/admin-token` (mode 0600). Returns the token and, when it was just generated, the
/// file to tell the administrator about.
pub fn load_or_create_token(
    token_file: Option<&FsPath>,
    state_dir: &FsPath,
) -> Result<(String, Option<PathBuf>), AdminError> {
    let err = |file: &FsPath, reason: String| AdminError::Token {
        file: file.display().to_string(),
        reason,
    };
    if let Some(f) = token_file {
        let t = std::fs::read_to_string(f).map_err(|e| err(f, e.to_string()))?;
        let t = t.trim().to_string();
        if t.len() < 16 {
            return Err(err(f, "the token must be at least 16 characters".into()));
        }
        return Ok((t, None));
    }
    let path = state_dir.join("admin-token");
    if let Ok(t) = std::fs::read_to_string(&path) {
        let t = t.trim().to_string();
        if t.len() >= 16 {
            return Ok((t, None));
        }
    }
    let token: String = (0..32)
        .map(|_| {
            let n = rand::random::<u8>() % 62;
            (match n {
                0..=9 => b'0' + n,
                10..=35 => b'a' + n - 10,
                _ => b'A' + n - 36,
            }) as char
        })
        .collect();
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| err(&path, e.to_string()))?;
    f.write_all(token.as_bytes())
        .map_err(|e| err(&path, e.to_string()))?;
    Ok((token, Some(path)))
}

/// Starts the admin listener (and the webhooks); returns the address it listens on.
pub async fn start(setup: AdminSetup) -> Result<SocketAddr, AdminError> {
    let listen = setup.listen;
    let state = AdminState {
        store: setup.store,
        status: setup.status,
        token: Arc::new(setup.token),
        metrics: setup.metrics.clone(),
        events: setup.events.clone(),
        new_agents_must_change: setup.new_agents_must_change,
        streams: Arc::new(tokio::sync::Semaphore::new(MAX_EVENT_STREAMS)),
    };
    let api = Router::new()
        .route("/api/agents", get(api::list_agents).post(api::create_agent))
        .route("/api/agents:import", post(api::import))
        .route(
            "/api/agents/{number}",
            get(api::get_agent)
                .patch(api::patch_agent)
                .delete(api::delete_agent),
        )
        .route("/api/agents/{number}/passcode", post(api::set_passcode))
        .route("/api/agents/{number}/unlock", post(api::unlock))
        .route("/api/sessions", get(api::sessions))
        .route("/api/sessions/{agent}/logout", post(api::force_logout))
        .route("/api/sessions/{agent}/status", put(api::set_status))
        .route("/api/audit", get(api::audit))
        .route("/api/events", get(api::events))
        .route("/api/openapi.json", get(api::openapi))
        .route("/metrics", get(metrics))
        .layer(middleware::from_fn_with_state(state.clone(), require_token));
    let app = Router::new()
        .route("/", get(page))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .merge(api)
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                Json(serde_json::json!({ "error": "no such path; see /api/openapi.json" })),
            )
        })
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| AdminError::Listen {
            listen,
            reason: e.to_string(),
        })?;
    let bound = listener.local_addr().unwrap_or(listen);
    webhooks::start(&setup.webhooks, &setup.events, setup.metrics);
    tokio::spawn(async move {
        let app = app.into_make_service_with_connect_info::<SocketAddr>();
        if let Err(e) = axum::serve(listener, app).await {
            warn!(error = %e, "admin listener stopped");
        }
    });
    Ok(bound)
}

/// The largest request body (an import of 10,000 agents fits).
const MAX_BODY: usize = 2 * 1024 * 1024;

/// The status page: static, served from the binary; everything it shows comes from API calls
/// made with the token the administrator types in.
async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
            ),
        ],
        include_str!("page.html"),
    )
        .into_response()
}

/// 401 without the right `Authorization: Bearer TOKEN`, logged with the source address (the
/// token itself never is).
async fn require_token(
    State(state): State<AdminState>,
    ConnectInfo(from): ConnectInfo<SocketAddr>,
    req: Request,
    next: Next,
) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !same(given.as_bytes(), state.token.as_bytes()) {
        warn!(target: "agentgw::security", "admin API refused: reason=\"bad or missing token\" path={} source={}", req.uri().path(), from.ip());
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "a valid admin token is needed: Authorization: Bearer TOKEN\n",
        )
            .into_response();
    }
    next.run(req).await
}

/// Compares in time independent of where the first difference is.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// 200 when calls are taken: the SIP listeners are up (they are bound before the admin
/// listener starts), the gateway is not draining, and the store answers.
async fn readyz(State(s): State<AdminState>) -> Response {
    if s.status.draining() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "draining: new calls are refused\n",
        )
            .into_response();
    }
    match s.store.count_sessions().await {
        Ok(_) => "ready\n".into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("store unreachable: {e}\n"),
        )
            .into_response(),
    }
}

async fn metrics(State(s): State<AdminState>) -> Response {
    let gauges = s.status.gauges().await;
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(&gauges, s.store.latency()),
    )
        .into_response()
}
