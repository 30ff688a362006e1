//! The REST API and the event stream. Every change is one store transaction; bad input gets
//! 400 (not JSON, a bad agent number in the path) or 422 (a field that is wrong, named) and
//! writes nothing.

use super::AdminState;
use crate::login::{AgentStatus, Passcode};
use crate::store::{
    validate_agent_number, Agent, AgentFieldsInput, AgentInput, AuditQuery, AuditRecord,
    ImportSummary, Session, Store, StoreError, DEFAULT_TENANT, REASON_ADMINISTRATOR,
};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;
use serde_json::json;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;

/// An API error: the status and a message naming what was wrong.
pub struct ApiError {
    status: StatusCode,
    body: serde_json::Value,
}

impl ApiError {
    fn new(status: StatusCode, msg: impl std::fmt::Display) -> ApiError {
        ApiError {
            status,
            body: json!({ "error": msg.to_string() }),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::NoSuchAgent(_) => ApiError::new(StatusCode::NOT_FOUND, e),
            StoreError::AgentExists(_) => ApiError::new(StatusCode::CONFLICT, e),
            StoreError::Invalid(_) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e),
            StoreError::Import(ref lines) => ApiError {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                body: json!({ "error": "nothing was imported", "lines": lines }),
            },
            StoreError::Unavailable(_) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e),
        }
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// Parses a JSON body, naming the field on error: 400 when it is not JSON, 422 when a field
/// is unknown, missing or of the wrong type.
fn body<T: DeserializeOwned>(bytes: &[u8]) -> ApiResult<T> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            return ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("the body is not JSON: {inner}"),
            );
        }
        let msg = if path == "." {
            inner.to_string()
        } else {
            format!("{path}: {inner}")
        };
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            body: json!({ "error": msg, "field": (path != ".").then_some(path) }),
        }
    })
}

/// Checks an agent number from the path: 400 when it cannot be one.
fn number(n: &str) -> ApiResult<()> {
    validate_agent_number(n).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e))
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TenantQuery {
    /// The tenant (default: "default").
    tenant: Option<String>,
}

/// The store of `tenant` (default: the default tenant); 404 when the config has no such tenant.
fn tenant_store(s: &AdminState, tenant: Option<&str>) -> ApiResult<Store> {
    let tenant = tenant.unwrap_or(DEFAULT_TENANT);
    if !s.status.has_tenant(tenant) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no tenant {tenant:?} in the config ([[tenant]] name)"),
        ));
    }
    Ok(s.store.for_tenant(tenant))
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AgentFilter {
    /// The tenant (default: "default").
    tenant: Option<String>,
    /// Only agents logged on (true) or not (false).
    logged_on: Option<bool>,
    /// Only agents locked (true) or not (false).
    locked: Option<bool>,
}

/// The agents (never their passcodes).
#[utoipa::path(get, path = "/api/agents", params(AgentFilter), tag = "agents",
    responses((status = 200, body = [Agent])))]
pub async fn list_agents(
    State(s): State<AdminState>,
    Query(q): Query<AgentFilter>,
) -> ApiResult<Json<Vec<Agent>>> {
    let mut agents = tenant_store(&s, q.tenant.as_deref())?.list_agents().await?;
    agents.retain(|a| {
        q.logged_on.is_none_or(|l| a.logged_on == l) && q.locked.is_none_or(|l| a.locked == l)
    });
    Ok(Json(agents))
}

/// Creates an agent (its passcode is required).
#[utoipa::path(post, path = "/api/agents", params(TenantQuery), request_body = AgentInput, tag = "agents",
    responses((status = 201, body = Agent), (status = 409, description = "the agent exists"),
              (status = 422, description = "a field is wrong; the message names it")))]
pub async fn create_agent(
    State(s): State<AdminState>,
    Query(q): Query<TenantQuery>,
    bytes: Bytes,
) -> ApiResult<(StatusCode, Json<Agent>)> {
    let input: AgentInput = body(&bytes)?;
    let store = tenant_store(&s, q.tenant.as_deref())?;
    let mut changes = input.fields().into_changes()?;
    let Some(passcode) = input.passcode else {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "passcode: a new agent needs a passcode (4 to 16 digits)",
        ));
    };
    if changes.must_change.is_none() && s.new_agents_must_change {
        changes.must_change = Some(true);
    }
    store
        .create_agent(&input.number, &Passcode(passcode), &changes)
        .await
        .map_err(|e| match e {
            StoreError::Invalid(m) if !m.contains(':') => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("number or passcode: {m}"),
            ),
            e => e.into(),
        })?;
    let agent = store
        .agent(&input.number)
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::CONFLICT, "the agent was removed at once"))?;
    Ok((StatusCode::CREATED, Json(agent)))
}

/// One agent.
#[utoipa::path(get, path = "/api/agents/{number}", params(("number" = String, Path), TenantQuery), tag = "agents",
    responses((status = 200, body = Agent), (status = 404)))]
pub async fn get_agent(
    State(s): State<AdminState>,
    Path(n): Path<String>,
    Query(q): Query<TenantQuery>,
) -> ApiResult<Json<Agent>> {
    number(&n)?;
    let agent = tenant_store(&s, q.tenant.as_deref())?
        .agent(&n)
        .await?
        .ok_or(StoreError::NoSuchAgent(n))?;
    Ok(Json(agent))
}

/// Changes an agent: the fields given, in one transaction.
#[utoipa::path(patch, path = "/api/agents/{number}", params(("number" = String, Path), TenantQuery),
    request_body = AgentFieldsInput, tag = "agents",
    responses((status = 200, body = Agent), (status = 404), (status = 422)))]
pub async fn patch_agent(
    State(s): State<AdminState>,
    Path(n): Path<String>,
    Query(q): Query<TenantQuery>,
    bytes: Bytes,
) -> ApiResult<Json<Agent>> {
    number(&n)?;
    let changes = body::<AgentFieldsInput>(&bytes)?.into_changes()?;
    let store = tenant_store(&s, q.tenant.as_deref())?;
    store.update_agent(&n, &changes).await?;
    let agent = store.agent(&n).await?.ok_or(StoreError::NoSuchAgent(n))?;
    Ok(Json(agent))
}

/// Removes an agent (and its session: a stay line is dropped).
#[utoipa::path(delete, path = "/api/agents/{number}", params(("number" = String, Path), TenantQuery), tag = "agents",
    responses((status = 204), (status = 404)))]
pub async fn delete_agent(
    State(s): State<AdminState>,
    Path(n): Path<String>,
    Query(q): Query<TenantQuery>,
) -> ApiResult<StatusCode> {
    number(&n)?;
    tenant_store(&s, q.tenant.as_deref())?
        .remove_agent(&n)
        .await?;
    s.events.poke();
    Ok(StatusCode::NO_CONTENT)
}

/// A new passcode.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasscodeInput {
    /// 4 to 16 digits.
    passcode: String,
    /// The agent must choose a new passcode at the next login (default false).
    #[serde(default)]
    must_change: bool,
}

/// Sets an agent's passcode (and clears its failure count).
#[utoipa::path(post, path = "/api/agents/{number}/passcode", params(("number" = String, Path), TenantQuery),
    request_body = PasscodeInput, tag = "agents",
    responses((status = 204), (status = 404), (status = 422)))]
pub async fn set_passcode(
    State(s): State<AdminState>,
    Path(n): Path<String>,
    Query(q): Query<TenantQuery>,
    bytes: Bytes,
) -> ApiResult<StatusCode> {
    number(&n)?;
    let input: PasscodeInput = body(&bytes)?;
    tenant_store(&s, q.tenant.as_deref())?
        .reset_passcode(&n, &Passcode(input.passcode), input.must_change)
        .await
        .map_err(|e| match e {
            StoreError::Invalid(m) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, format!("passcode: {m}"))
            }
            e => e.into(),
        })?;
    Ok(StatusCode::NO_CONTENT)
}

/// Lifts a lockout.
#[utoipa::path(post, path = "/api/agents/{number}/unlock", params(("number" = String, Path), TenantQuery), tag = "agents",
    responses((status = 200, description = "{agent, was_locked}"), (status = 404)))]
pub async fn unlock(
    State(s): State<AdminState>,
    Path(n): Path<String>,
    Query(q): Query<TenantQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    number(&n)?;
    let was_locked = tenant_store(&s, q.tenant.as_deref())?.unlock(&n).await?;
    Ok(Json(json!({ "agent": n, "was_locked": was_locked })))
}

/// Creates or updates agents from CSV (`Content-Type: text/csv`, a header row naming the
/// columns) or JSON (an array of agents): all of them or none; every bad line is reported.
#[utoipa::path(post, path = "/api/agents:import", params(TenantQuery), tag = "agents",
    request_body(content = String, description = "CSV with a header row (number,name,passcode,enabled,stations,networks,default_extension,language,must_change) or a JSON array of agents", content_type = "text/csv"),
    responses((status = 200, body = ImportSummary), (status = 422, description = "{error, lines: [\"line N: …\"]}")))]
pub async fn import(
    State(s): State<AdminState>,
    Query(q): Query<TenantQuery>,
    headers: HeaderMap,
    bytes: Bytes,
) -> ApiResult<Json<ImportSummary>> {
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "the body is not UTF-8"))?;
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map_or_else(
            || text.trim_start().starts_with('['),
            |ct| ct.contains("json"),
        );
    let (mut rows, errors) = crate::store::parse_import(text, json)?;
    if s.new_agents_must_change {
        for r in &mut rows {
            if r.passcode.is_some() && r.changes.must_change.is_none() {
                r.changes.must_change = Some(true);
            }
        }
    }
    let done = tenant_store(&s, q.tenant.as_deref())?
        .import_agents(&rows, errors)
        .await?;
    Ok(Json(done))
}

/// The agents logged on.
#[utoipa::path(get, path = "/api/sessions", params(TenantQuery), tag = "sessions",
    responses((status = 200, body = [Session])))]
pub async fn sessions(
    State(s): State<AdminState>,
    Query(q): Query<TenantQuery>,
) -> ApiResult<Json<Vec<Session>>> {
    Ok(Json(
        tenant_store(&s, q.tenant.as_deref())?
            .list_sessions()
            .await?,
    ))
}

/// Force logout: the session ends; when the agent's line is up (`after_login = "stay"`) it
/// hears "You have been logged out by an administrator." and gets a BYE.
#[utoipa::path(post, path = "/api/sessions/{agent}/logout", params(("agent" = String, Path), TenantQuery), tag = "sessions",
    responses((status = 200, description = "{agent, logged_out: true}"), (status = 404, description = "not logged on")))]
pub async fn force_logout(
    State(s): State<AdminState>,
    Path(agent): Path<String>,
    Query(q): Query<TenantQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    number(&agent)?;
    let found = tenant_store(&s, q.tenant.as_deref())?
        .logout(&agent, REASON_ADMINISTRATOR)
        .await?;
    if !found {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("agent {agent} is not logged on"),
        ));
    }
    s.events.poke();
    Ok(Json(json!({ "agent": agent, "logged_out": true })))
}

/// A status to set.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusInput {
    /// "available", "on_break" or "work_offline".
    status: String,
}

/// Sets a logged-on agent's status.
#[utoipa::path(put, path = "/api/sessions/{agent}/status", params(("agent" = String, Path), TenantQuery),
    request_body = StatusInput, tag = "sessions",
    responses((status = 200, body = Session), (status = 404, description = "not logged on"), (status = 422)))]
pub async fn set_status(
    State(s): State<AdminState>,
    Path(agent): Path<String>,
    Query(q): Query<TenantQuery>,
    bytes: Bytes,
) -> ApiResult<Json<Session>> {
    number(&agent)?;
    let input: StatusInput = body(&bytes)?;
    let status = AgentStatus::parse(&input.status).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "status: {:?} is not one of available, on_break, work_offline",
                input.status
            ),
        )
    })?;
    let store = tenant_store(&s, q.tenant.as_deref())?;
    if !store.set_status(&agent, status).await? {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("agent {agent} is not logged on"),
        ));
    }
    let session = store
        .list_sessions()
        .await?
        .into_iter()
        .find(|x| x.agent == agent)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                format!("agent {agent} is not logged on"),
            )
        })?;
    Ok(Json(session))
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    tenant: Option<String>,
    /// Only this agent's entries.
    agent: Option<String>,
    /// Entries after this id, oldest first (page forward with the last id you got).
    since: Option<i64>,
    /// Entries before this id, newest first (page back with `next_before`).
    before: Option<i64>,
    /// At most this many (1-1000, default 100).
    limit: Option<u32>,
}

/// A page of the audit log.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct AuditPage {
    entries: Vec<AuditRecord>,
    /// The `before` of the next (older) page, when reading newest first and there may be more.
    next_before: Option<i64>,
    /// The `since` of the next (newer) page, when reading oldest first.
    next_since: Option<i64>,
}

/// The audit log, paged: newest first (`before`), or oldest first after an id (`since`).
#[utoipa::path(get, path = "/api/audit", params(AuditParams), tag = "audit",
    responses((status = 200, body = AuditPage)))]
pub async fn audit(
    State(s): State<AdminState>,
    Query(q): Query<AuditParams>,
) -> ApiResult<Json<AuditPage>> {
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let entries = tenant_store(&s, q.tenant.as_deref())?
        .audit_page(AuditQuery {
            agent: q.agent.as_deref(),
            before: q.before,
            after: q.since,
            limit,
        })
        .await?;
    let last = entries.last().map(|e| e.id);
    let full = entries.len() as u32 == limit;
    Ok(Json(AuditPage {
        next_before: if q.since.is_none() && full {
            last
        } else {
            None
        },
        next_since: if q.since.is_some() {
            last.or(q.since)
        } else {
            None
        },
        entries,
    }))
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventParams {
    /// Only this tenant's events (default: every tenant).
    tenant: Option<String>,
    /// Only these events, comma-separated (login,logout,login_failed,login_refused,lockout,
    /// unlock,status,…).
    events: Option<String>,
    /// Resume after this id (as the Last-Event-ID header does, for clients that cannot set it).
    after: Option<i64>,
}

/// Server-Sent Events: every audit event as it happens (`id:` is the audit id, `event:` its
/// name, `data:` the entry as JSON). Reconnect with `Last-Event-ID` to receive, once each,
/// the events written while away.
#[utoipa::path(get, path = "/api/events", params(EventParams), tag = "events",
    responses((status = 200, content_type = "text/event-stream", description = "the stream", body = AuditRecord),
              (status = 503, description = "too many event streams open")))]
pub async fn events(
    State(s): State<AdminState>,
    Query(q): Query<EventParams>,
    headers: HeaderMap,
) -> ApiResult<Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>>> {
    let permit = s.streams.clone().try_acquire_owned().map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "{} event streams are open already",
                super::MAX_EVENT_STREAMS
            ),
        )
    })?;
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok())
        .or(q.after);
    // Subscribe before reading the backlog: what is written in between arrives twice at most,
    // and ids at or below the cursor are skipped.
    let rx = s.events.subscribe();
    let cursor = match resume {
        Some(id) => id,
        None => s.store.last_audit_id().await?,
    };
    let wanted: Option<Vec<String>> = q
        .events
        .map(|e| e.split(',').map(|x| x.trim().to_string()).collect());
    let follower = Follower {
        events: s.events.clone(),
        rx,
        cursor,
        backlog: VecDeque::new(),
        catching_up: resume.is_some(),
        tenant: q.tenant,
        wanted,
        _permit: permit,
    };
    let stream = futures_util::stream::unfold(follower, |mut f| async move {
        let e = f.next().await?;
        let ev = Event::default()
            .id(e.id.to_string())
            .event(e.event.clone())
            .json_data(&*e)
            .unwrap_or_default();
        Some((Ok(ev), f))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// One consumer's place in the event stream.
struct Follower {
    events: crate::events::Events,
    rx: tokio::sync::broadcast::Receiver<Arc<AuditRecord>>,
    cursor: i64,
    backlog: VecDeque<Arc<AuditRecord>>,
    /// Read the store from the cursor before taking live events.
    catching_up: bool,
    tenant: Option<String>,
    wanted: Option<Vec<String>>,
    /// This stream's place among `MAX_EVENT_STREAMS`, given back when it closes.
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Follower {
    /// The next event this consumer wants; `None` when the gateway stops.
    async fn next(&mut self) -> Option<Arc<AuditRecord>> {
        use tokio::sync::broadcast::error::RecvError;
        loop {
            let e = if let Some(e) = self.backlog.pop_front() {
                e
            } else if self.catching_up {
                const PAGE: u32 = 500;
                match self.events.since(self.cursor, PAGE).await {
                    Ok(page) => {
                        self.catching_up = page.len() as u32 == PAGE;
                        self.backlog.extend(page.into_iter().map(Arc::new));
                    }
                    Err(_) => {
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    }
                }
                continue;
            } else {
                match self.rx.recv().await {
                    Ok(e) => e,
                    Err(RecvError::Lagged(_)) => {
                        self.catching_up = true;
                        continue;
                    }
                    Err(RecvError::Closed) => return None,
                }
            };
            if e.id <= self.cursor {
                continue;
            }
            self.cursor = e.id;
            let tenant_ok = self.tenant.as_ref().is_none_or(|t| *t == e.tenant);
            let event_ok = self
                .wanted
                .as_ref()
                .is_none_or(|w| w.iter().any(|x| *x == e.event));
            if tenant_ok && event_ok {
                return Some(e);
            }
        }
    }
}

/// The OpenAPI document of this API.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "agentgw admin API", description = "Agents, sessions, force logout, the audit log and the event stream of an agentgw SIP agent-login gateway. Every call needs `Authorization: Bearer TOKEN`."),
    paths(list_agents, create_agent, get_agent, patch_agent, delete_agent, set_passcode, unlock,
          import, sessions, force_logout, set_status, audit, events),
    components(schemas(Agent, Session, AuditRecord, AgentInput, AgentFieldsInput, ImportSummary,
                       PasscodeInput, StatusInput, AuditPage)),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let c = doc.components.get_or_insert_with(Default::default);
        c.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// `GET /api/openapi.json`.
pub async fn openapi() -> Response {
    use utoipa::OpenApi;
    (
        [(header::CONTENT_TYPE, "application/json")],
        ApiDoc::openapi().to_pretty_json().unwrap_or_default(),
    )
        .into_response()
}
