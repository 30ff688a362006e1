//! The admin listener (axum): a bearer token guards everything but the health probes.
//! This first part serves what an administrator needs to see and act on sessions: the agents,
//! the sessions, force logout (a stay line hears "You have been logged out by an
//! administrator." and gets a BYE), `/metrics`, `/healthz` and `/readyz`.

use crate::gateway::GatewayStatus;
use crate::media::dtmf::DtmfMethod;
use crate::store::{Store, DEFAULT_TENANT, REASON_ADMINISTRATOR};
use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path as FsPath, PathBuf};
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
struct AdminState {
    store: Store,
    status: GatewayStatus,
    /// The bearer token every API call must carry.
    token: Arc<String>,
    /// Keys received by method (for /metrics).
    dtmf: Arc<dyn Fn(DtmfMethod) -> u64 + Send + Sync>,
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

/// Starts the admin listener; returns the address it listens on.
pub async fn start(
    listen: SocketAddr,
    token: String,
    store: Store,
    status: GatewayStatus,
    dtmf: Arc<dyn Fn(DtmfMethod) -> u64 + Send + Sync>,
) -> Result<SocketAddr, AdminError> {
    let state = AdminState {
        store,
        status,
        token: Arc::new(token),
        dtmf,
    };
    let api = Router::new()
        .route("/api/agents", get(agents))
        .route("/api/sessions", get(sessions))
        .route("/api/agents/{number}/unlock", post(unlock))
        .route("/api/audit", get(audit))
        .route("/api/sessions/{agent}/logout", post(force_logout))
        .route("/metrics", get(metrics))
        .layer(middleware::from_fn_with_state(state.clone(), require_token));
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .merge(api)
        .with_state(state);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| AdminError::Listen {
            listen,
            reason: e.to_string(),
        })?;
    let bound = listener.local_addr().unwrap_or(listen);
    tokio::spawn(async move {
        let app = app.into_make_service_with_connect_info::<SocketAddr>();
        if let Err(e) = axum::serve(listener, app).await {
            warn!(error = %e, "admin listener stopped");
        }
    });
    Ok(bound)
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

#[derive(serde::Deserialize)]
struct TenantQuery {
    tenant: Option<String>,
}

impl TenantQuery {
    fn store(&self, store: &Store) -> Store {
        store.for_tenant(self.tenant.as_deref().unwrap_or(DEFAULT_TENANT))
    }
}

fn unavailable(e: impl std::fmt::Display) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(serde_json::json!({ "error": e.to_string() })),
    )
        .into_response()
}

async fn agents(State(s): State<AdminState>, Query(q): Query<TenantQuery>) -> Response {
    match q.store(&s.store).list_agents().await {
        Ok(a) => Json(a).into_response(),
        Err(e) => unavailable(e),
    }
}

async fn sessions(State(s): State<AdminState>, Query(q): Query<TenantQuery>) -> Response {
    match q.store(&s.store).list_sessions().await {
        Ok(list) => Json(list).into_response(),
        Err(e) => unavailable(e),
    }
}

async fn force_logout(
    State(s): State<AdminState>,
    Path(agent): Path<String>,
    Query(q): Query<TenantQuery>,
) -> Response {
    match q.store(&s.store).logout(&agent, REASON_ADMINISTRATOR).await {
        Ok(true) => Json(serde_json::json!({ "agent": agent, "logged_out": true })).into_response(),
        Ok(false) => (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({ "error": format!("agent {agent} is not logged on") })),
        )
            .into_response(),
        Err(e) => unavailable(e),
    }
}

async fn unlock(
    State(s): State<AdminState>,
    Path(number): Path<String>,
    Query(q): Query<TenantQuery>,
) -> Response {
    match q.store(&s.store).unlock(&number).await {
        Ok(was_locked) => {
            Json(serde_json::json!({ "agent": number, "was_locked": was_locked })).into_response()
        }
        Err(crate::store::StoreError::NoSuchAgent(n)) => (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({ "error": format!("agent {n} does not exist") })),
        )
            .into_response(),
        Err(e) => unavailable(e),
    }
}

#[derive(serde::Deserialize)]
struct AuditQuery {
    tenant: Option<String>,
    agent: Option<String>,
    limit: Option<u32>,
}

async fn audit(State(s): State<AdminState>, Query(q): Query<AuditQuery>) -> Response {
    let store = s
        .store
        .for_tenant(q.tenant.as_deref().unwrap_or(DEFAULT_TENANT));
    match store
        .audit_log(q.agent.as_deref(), q.limit.unwrap_or(100))
        .await
    {
        Ok(list) => Json(list).into_response(),
        Err(e) => unavailable(e),
    }
}

async fn readyz(State(s): State<AdminState>) -> Response {
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
    let (calls, sessions) = s.status.snapshot().await;
    let mut out = String::new();
    let _ = writeln!(out, "# HELP agentgw_active_calls Calls in progress.\n# TYPE agentgw_active_calls gauge\nagentgw_active_calls {calls}");
    let _ = writeln!(out, "# HELP agentgw_sessions Agents logged on, every tenant.\n# TYPE agentgw_sessions gauge\nagentgw_sessions {sessions}");
    let _ = writeln!(out, "# HELP agentgw_dtmf_keys_total Keys received, by method.\n# TYPE agentgw_dtmf_keys_total counter");
    for m in DtmfMethod::ALL {
        let _ = writeln!(
            out,
            "agentgw_dtmf_keys_total{{method=\"{m}\"}} {}",
            (s.dtmf)(m)
        );
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}
