//! The admin API over real HTTP against a running gateway: the token, every endpoint, bad
//! input, the event stream resumed with Last-Event-ID, webhooks, metrics.

mod support;

use agentgw::media::prompts::PromptId;
use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;
use support::{http, metric, start_gateway_with, EventStream, Phone, PhoneOptions};

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

const JSON: &str = "application/json";

#[tokio::test]
async fn every_endpoint_needs_the_token() {
    let gw = start_gateway_with("127.0.0.1", |_| {}).await;
    let (admin, token) = gw.start_admin().await;
    let endpoints = [
        ("GET", "/api/agents"),
        ("POST", "/api/agents"),
        ("GET", "/api/agents/1001"),
        ("PATCH", "/api/agents/1001"),
        ("DELETE", "/api/agents/1001"),
        ("POST", "/api/agents/1001/passcode"),
        ("POST", "/api/agents/1001/unlock"),
        ("POST", "/api/agents:import"),
        ("GET", "/api/sessions"),
        ("POST", "/api/sessions/1001/logout"),
        ("PUT", "/api/sessions/1001/status"),
        ("GET", "/api/audit"),
        ("GET", "/api/events"),
        ("GET", "/api/openapi.json"),
        ("GET", "/metrics"),
    ];
    for (method, path) in endpoints {
        assert_eq!(
            http(admin, method, path, None, None).await.0,
            401,
            "{method} {path}"
        );
        assert_eq!(
            http(admin, method, path, Some("wrong-token-wrong-token"), None)
                .await
                .0,
            401,
            "{method} {path}"
        );
    }
    // Nothing was deleted by the refused calls.
    assert!(gw.store.agent_exists("1001").await.unwrap());
    // The probes and the page itself need none; the page holds no data.
    assert_eq!(http(admin, "GET", "/healthz", None, None).await.0, 200);
    assert_eq!(http(admin, "GET", "/readyz", None, None).await.0, 200);
    let (status, page) = http(admin, "GET", "/", None, None).await;
    assert_eq!(status, 200);
    assert!(page.contains("Agent Status") && !page.contains("1001"));

    // The OpenAPI document names every path, generated from the handlers.
    let (status, doc) = http(admin, "GET", "/api/openapi.json", Some(&token), None).await;
    assert_eq!(status, 200);
    let doc = json(&doc);
    for (_, path) in &endpoints[..endpoints.len() - 2] {
        let templated = path.replace("1001", "{number}");
        let templated = if path.starts_with("/api/sessions/") {
            path.replace("1001", "{agent}")
        } else {
            templated
        };
        assert!(
            doc["paths"].get(&templated).is_some(),
            "{templated} missing from the OpenAPI document"
        );
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
}

#[tokio::test]
async fn agents_are_created_changed_and_removed_and_bad_input_names_the_field() {
    let gw = start_gateway_with("127.0.0.1", |_| {}).await;
    let (admin, token) = gw.start_admin().await;
    let t = Some(token.as_str());
    let post = |path: &'static str, body: &'static str| async move {
        http(admin, "POST", path, t, Some((JSON, body))).await
    };

    // Create, then log in with it from a phone: the agent is real.
    let (status, body) = post(
        "/api/agents",
        r#"{"number":"2001","name":"Ann","passcode":"8642","stations":["*@*"],"language":"en"}"#,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let a = json(&body);
    assert_eq!(
        (a["number"].as_str(), a["name"].as_str()),
        (Some("2001"), Some("Ann"))
    );
    assert!(!body.contains("8642") && !body.contains("argon2"));
    let mut p = Phone::new(gw.udp, PhoneOptions::default()).await;
    p.call().await;
    p.press("2001#8642#").await;
    p.expect_prompt(PromptId::AgentLoginOk).await;

    // Bad input: each refused with the field named, nothing written.
    let cases: [(&str, u16, &str); 7] = [
        (
            r#"{"number":"2001","passcode":"1234"}"#,
            409,
            "already exists",
        ),
        (r#"{"number":"20x1","passcode":"1234"}"#, 422, "number"),
        (r#"{"number":"2002","passcode":"12"}"#, 422, "passcode"),
        (r#"{"number":"2002"}"#, 422, "passcode"),
        (
            r#"{"number":"2002","passcode":"1234","colour":"red"}"#,
            422,
            "colour",
        ),
        (
            r#"{"number":"2002","passcode":"1234","networks":["10.0.0.0/33"]}"#,
            422,
            "networks",
        ),
        (r#"{"number":"2002","passcode":"1234""#, 400, "not JSON"),
    ];
    for (body, want, names) in cases {
        let (status, answer) = http(admin, "POST", "/api/agents", t, Some((JSON, body))).await;
        assert_eq!(status, want, "{body} → {answer}");
        assert!(answer.contains(names), "{body} → {answer}");
    }
    assert!(!gw.store.agent_exists("2002").await.unwrap());

    // PATCH: one transaction; a bad field changes nothing.
    let (status, body) = http(
        admin,
        "PATCH",
        "/api/agents/1002",
        t,
        Some((JSON, r#"{"name":"Bo","networks":["not-a-network"]}"#)),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("networks"), "{body}");
    let (_, body) = http(admin, "GET", "/api/agents/1002", t, None).await;
    assert_eq!(json(&body)["name"], "Demo");
    let (status, body) = http(
        admin,
        "PATCH",
        "/api/agents/1002",
        t,
        Some((
            JSON,
            r#"{"name":"Bo","enabled":false,"default_extension":"2002"}"#,
        )),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let a = json(&body);
    assert_eq!(
        (a["name"].as_str(), a["enabled"].as_bool()),
        (Some("Bo"), Some(false))
    );
    assert_eq!(http(admin, "GET", "/api/agents/12ab", t, None).await.0, 400);
    assert_eq!(http(admin, "GET", "/api/agents/4242", t, None).await.0, 404);
    assert_eq!(
        http(admin, "PATCH", "/api/agents/4242", t, Some((JSON, "{}")))
            .await
            .0,
        404
    );

    // Filters.
    let (_, body) = http(admin, "GET", "/api/agents?logged_on=true", t, None).await;
    let on: Vec<String> = json(&body)
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["number"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(on, ["2001"]);

    // Passcode reset, then the old one is refused and the new one works (forced change).
    let (status, body) = http(
        admin,
        "POST",
        "/api/agents/1003/passcode",
        t,
        Some((JSON, r#"{"passcode":"97531"}"#)),
    )
    .await;
    assert_eq!(status, 204, "{body}");
    let (status, body) = post("/api/agents/1003/passcode", r#"{"passcode":"1"}"#).await;
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("passcode"), "{body}");
    let mut p3 = Phone::new(gw.udp, PhoneOptions::default()).await;
    p3.call().await;
    p3.press("1003#97531#").await;
    p3.expect_prompt(PromptId::AgentLoginOk).await;

    // Status of a session.
    let (status, body) = http(
        admin,
        "PUT",
        "/api/sessions/2001/status",
        t,
        Some((JSON, r#"{"status":"available"}"#)),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["status"], "available");
    let (status, body) = http(
        admin,
        "PUT",
        "/api/sessions/2001/status",
        t,
        Some((JSON, r#"{"status":"asleep"}"#)),
    )
    .await;
    assert_eq!(status, 422);
    assert!(body.contains("status"), "{body}");
    assert_eq!(
        http(
            admin,
            "PUT",
            "/api/sessions/1002/status",
            t,
            Some((JSON, r#"{"status":"available"}"#))
        )
        .await
        .0,
        404
    );

    // DELETE ends the session too.
    assert_eq!(
        http(admin, "DELETE", "/api/agents/2001", t, None).await.0,
        204
    );
    assert_eq!(
        http(admin, "DELETE", "/api/agents/2001", t, None).await.0,
        404
    );
    let (_, body) = http(admin, "GET", "/api/sessions", t, None).await;
    assert!(!body.contains("\"2001\""), "{body}");

    // A tenant the config does not have: refused, nothing made.
    let (status, body) = post(
        "/api/agents?tenant=nosuch",
        r#"{"number":"2002","name":"Bo","passcode":"8642"}"#,
    )
    .await;
    assert_eq!(status, 404, "{body}");
    assert!(
        body.contains("no tenant") && body.contains("nosuch"),
        "{body}"
    );
    let (status, _) = http(admin, "GET", "/api/agents?tenant=nosuch", t, None).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn an_import_is_all_or_nothing_with_line_numbers() {
    let gw = start_gateway_with("127.0.0.1", |_| {}).await;
    let (admin, token) = gw.start_admin().await;
    let t = Some(token.as_str());
    let bad = "number,name,passcode,stations\n\
               3001,Cy,1111,\n\
               30x2,Di,2222,\n\
               3003,Ed,,\n\
               3004,Flo,44,\n\
               1001,Renamed,,\n";
    let (status, body) = http(
        admin,
        "POST",
        "/api/agents:import",
        t,
        Some(("text/csv", bad)),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    let lines: Vec<String> = json(&body)["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_string())
        .collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(lines[0].starts_with("line 3:"), "{lines:?}");
    assert!(
        lines[1].starts_with("line 4:") && lines[1].contains("needs a passcode"),
        "{lines:?}"
    );
    assert!(
        lines[2].starts_with("line 5:") && lines[2].contains("passcode"),
        "{lines:?}"
    );
    assert!(
        !gw.store.agent_exists("3001").await.unwrap(),
        "nothing half-written"
    );
    assert_eq!(gw.store.agent("1001").await.unwrap().unwrap().name, "Demo");

    let good = "number,name,passcode,stations,networks\n\
                3001,Cy,1111,desk-1@pbx;desk-2@pbx,10.0.0.0/8\n\
                1001,Renamed,,,\n";
    let (status, body) = http(
        admin,
        "POST",
        "/api/agents:import",
        t,
        Some(("text/csv", good)),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body), serde_json::json!({"created": 1, "updated": 1}));
    let a = gw.store.agent("3001").await.unwrap().unwrap();
    assert_eq!(a.stations, ["desk-1@pbx", "desk-2@pbx"]);
    assert_eq!(a.networks, ["10.0.0.0/8"]);
    assert_eq!(
        gw.store.agent("1001").await.unwrap().unwrap().name,
        "Renamed"
    );

    let (status, body) = http(
        admin,
        "POST",
        "/api/agents:import",
        t,
        Some((JSON, r#"[{"number":"3005","passcode":"5555"},{"number":"3006","passcode":"5555","enabled":"no"}]"#)),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("item 2: enabled"), "{body}");
    assert!(!gw.store.agent_exists("3005").await.unwrap());
}

#[tokio::test]
async fn the_audit_log_pages_both_ways() {
    let gw = start_gateway_with("127.0.0.1", |_| {}).await;
    let (admin, token) = gw.start_admin().await;
    let t = Some(token.as_str());
    for _ in 0..5 {
        gw.store.set_must_change("1001", true).await.unwrap();
    }
    let (_, body) = http(admin, "GET", "/api/audit?agent=1001&limit=4", t, None).await;
    let page = json(&body);
    let first: Vec<i64> = page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect();
    assert_eq!(first.len(), 4);
    assert!(
        first.windows(2).all(|w| w[0] > w[1]),
        "newest first: {first:?}"
    );
    let before = page["next_before"].as_i64().unwrap();
    let (_, body) = http(
        admin,
        "GET",
        &format!("/api/audit?agent=1001&limit=4&before={before}"),
        t,
        None,
    )
    .await;
    let second: Vec<i64> = json(&body)["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect();
    assert_eq!(second.len(), 2, "5 changes + agent_added = 6 entries");
    assert!(second[0] < *first.last().unwrap());
    // Forward from an id.
    let (_, body) = http(
        admin,
        "GET",
        &format!("/api/audit?agent=1001&since={}", second[1]),
        t,
        None,
    )
    .await;
    let fwd: Vec<i64> = json(&body)["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect();
    assert_eq!(fwd.len(), 5);
    assert!(fwd.windows(2).all(|w| w[0] < w[1]), "oldest first: {fwd:?}");
}

#[tokio::test]
async fn a_consumer_that_reconnects_with_last_event_id_gets_every_event_exactly_once() {
    let gw = start_gateway_with("127.0.0.1", |_| {}).await;
    let (admin, token) = gw.start_admin().await;
    let mut events = EventStream::connect(admin, &token, None, "").await;
    assert_eq!(events.status, 200);
    let mut seen: Vec<i64> = Vec::new();
    // Events of several kinds: a login from a phone, a failed attempt, status, logout.
    let mut p = Phone::new(gw.udp, PhoneOptions::default()).await;
    p.call().await;
    p.press("1001#0000#1001#1234#").await;
    assert!(
        p.wait_for_prompt(PromptId::AgentLoginOk, 15).await,
        "{:?}",
        p.heard()
    );
    let mut kinds = Vec::new();
    while let Some(e) = events.next(2).await {
        assert_eq!(e.data["id"].as_i64(), Some(e.id));
        seen.push(e.id);
        kinds.push(e.event);
    }
    assert_eq!(kinds, ["login_failed", "login"], "{kinds:?}");
    drop(events);

    // While away: 30 more events.
    for i in 0..10 {
        gw.store.set_must_change("1002", i % 2 == 0).await.unwrap();
        gw.store.unlock("1002").await.unwrap();
        gw.store
            .set_status("1001", agentgw::login::AgentStatus::Available)
            .await
            .unwrap();
        gw.store.set_language("1003", "en").await.unwrap();
    }
    let last = *seen.last().unwrap();
    let mut events = EventStream::connect(admin, &token, Some(last), "").await;
    // And 5 more once reconnected.
    for _ in 0..5 {
        gw.store.set_language("1003", "en").await.unwrap();
    }
    while let Some(e) = events.next(2).await {
        seen.push(e.id);
    }
    assert_eq!(seen.len(), 2 + 30 + 5, "{seen:?}");
    let mut sorted = seen.clone();
    sorted.dedup();
    assert_eq!(sorted, seen, "in order, none twice");
    assert!(
        seen[2..].windows(2).all(|w| w[1] == w[0] + 1),
        "none missing: {seen:?}"
    );

    // Filters, and resuming by query for clients that cannot set the header.
    let mut logins = EventStream::connect(
        admin,
        &token,
        None,
        &format!("?events=login,logout&after={}", seen[0] - 1),
    )
    .await;
    let e = logins.next(5).await.unwrap();
    assert_eq!(
        (e.event.as_str(), e.data["agent"].as_str()),
        ("login", Some("1001"))
    );
    assert!(logins.next(1).await.is_none());
}

/// A webhook endpoint: answers 500 to the first `fail_first` requests, then 204; hands every
/// request (headers, body) to the test.
async fn endpoint(
    fail_first: usize,
) -> (
    SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<(u16, String, String)>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut n = 0;
        while let Ok((mut s, _)) = l.accept().await {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            loop {
                let got = s.read(&mut chunk).await.unwrap_or(0);
                if got == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..got]);
                let text = String::from_utf8_lossy(&buf).to_string();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("Content-Length: "))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    if body.len() >= len {
                        n += 1;
                        let (code, text) = if n <= fail_first {
                            (500, "500 Oops")
                        } else {
                            (204, "204 No Content")
                        };
                        let _ = s
                            .write_all(
                                format!("HTTP/1.1 {text}\r\nContent-Length: 0\r\n\r\n").as_bytes(),
                            )
                            .await;
                        let _ = tx.send((code, head.to_string(), body.to_string()));
                        break;
                    }
                }
            }
        }
    });
    (addr, rx)
}

#[tokio::test]
async fn webhooks_are_signed_retried_and_a_dead_endpoint_never_slows_a_login() {
    use hmac::{Hmac, Mac};
    let (live, mut got) = endpoint(1).await;
    // A port nothing listens on.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let gw = start_gateway_with("127.0.0.1", |c| {
        c.webhook = vec![
            agentgw::admin::webhooks::WebhookConfig {
                url: format!("http://{live}/agentgw").parse().unwrap(),
                secret: "a-shared-secret-0123".into(),
                events: vec!["login".into(), "logout".into()],
                queue: 100,
                max_tries: 5,
                timeout_ms: 1000,
            },
            agentgw::admin::webhooks::WebhookConfig {
                url: format!("http://{dead}/").parse().unwrap(),
                secret: "a-shared-secret-0123".into(),
                events: vec![],
                queue: 2,
                max_tries: 100,
                timeout_ms: 1000,
            },
        ];
    })
    .await;
    let (admin, token) = gw.start_admin().await;
    for (agent, pass) in [("1001", "1234"), ("1002", "2345"), ("1003", "3456")] {
        let mut p = Phone::new(gw.udp, PhoneOptions::default()).await;
        p.call().await;
        p.press(&format!("{agent}#{pass}#")).await;
        p.expect_prompt(PromptId::AgentLoginOk).await;
    }
    gw.store.logout("1002", "test").await.unwrap();
    // The first POST failed (500) and was retried: 4 events arrive, in order, each once.
    let mut bodies = Vec::new();
    let mut failed = 0;
    while bodies.len() < 4 {
        let (code, head, body) = tokio::time::timeout(Duration::from_secs(10), got.recv())
            .await
            .expect("webhook deliveries")
            .unwrap();
        if code != 204 {
            failed += 1;
            continue;
        }
        let header = |name: &str| {
            head.lines()
                .find_map(|l| l.strip_prefix(&format!("{name}: ")))
                .unwrap_or_default()
                .to_string()
        };
        let ts = header("X-Agentgw-Timestamp");
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"a-shared-secret-0123").unwrap();
        mac.update(format!("{ts}.{body}").as_bytes());
        let want: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(header("X-Agentgw-Signature"), format!("sha256={want}"));
        let v = json(&body);
        assert_eq!(header("X-Agentgw-Event"), v["event"].as_str().unwrap());
        bodies.push(v);
    }
    let got_events: Vec<(String, String)> = bodies
        .iter()
        .map(|b| {
            (
                b["event"].as_str().unwrap().into(),
                b["agent"].as_str().unwrap().into(),
            )
        })
        .collect();
    let mut unique = got_events.clone();
    unique.dedup();
    assert_eq!(unique.len(), 4, "{got_events:?}");
    assert_eq!(failed, 1, "the first try got a 500 and was retried");
    assert_eq!(got_events[3], ("logout".to_string(), "1002".to_string()));
    // The dead endpoint's queue (2) overflowed: dropped and counted; logins were unaffected.
    let (_, metrics) = http(admin, "GET", "/metrics", Some(&token), None).await;
    let dropped = metric(&metrics, "agentgw_webhook_dropped_total").unwrap();
    assert!(dropped >= 1, "{metrics}");
    assert!(
        metrics.contains("agentgw_webhook_deliveries_total 4"),
        "{metrics}"
    );
}

#[tokio::test]
async fn metrics_count_calls_logins_logouts_failures_rtp_and_store_latency() {
    let gw = start_gateway_with("127.0.0.1", |_| {}).await;
    let (admin, token) = gw.start_admin().await;
    let mut p = Phone::new(gw.udp, PhoneOptions::default()).await;
    p.call().await;
    p.press("1001#9999#1001#1234#").await;
    assert!(p.wait_for_prompt(PromptId::AgentLoginOk, 15).await);
    assert!(p.wait_for_bye(10).await.is_some());
    assert!(gw.settles().await);
    http(
        admin,
        "POST",
        "/api/sessions/1001/logout",
        Some(&token),
        None,
    )
    .await;
    // The counters follow the audit log within its poll interval.
    let mut text = String::new();
    for _ in 0..50 {
        text = http(admin, "GET", "/metrics", Some(&token), None).await.1;
        if text.contains("agentgw_logouts_total{reason=\"logged out by an administrator\"} 1") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for want in [
        "agentgw_calls_total{outcome=\"logged-in\"} 1",
        "agentgw_logins_total 1",
        "agentgw_login_failures_total 1",
        "agentgw_logouts_total{reason=\"logged out by an administrator\"} 1",
        "agentgw_active_calls 0",
        "agentgw_dtmf_keys_total{method=\"rfc4733\"} 20",
    ] {
        assert!(text.lines().any(|l| l == want), "{want} missing:\n{text}");
    }
    let counter = |name: &str| metric(&text, name).unwrap_or(0);
    assert!(counter("agentgw_rtp_packets_sent_total") > 50, "{text}");
    assert!(counter("agentgw_rtp_packets_received_total") > 10, "{text}");
    assert!(text.contains("agentgw_media_late_ticks_total "), "{text}");
    assert!(
        text.contains("agentgw_rtp_foreign_dropped_total "),
        "{text}"
    );
    assert!(text.contains("agentgw_media_realtime_threads 0"), "{text}");
    assert!(counter("agentgw_store_query_seconds_count") >= 4, "{text}");
}

#[tokio::test]
async fn event_streams_are_limited() {
    let gw = start_gateway_with("127.0.0.1", |_| {}).await;
    let (admin, token) = gw.start_admin().await;
    let mut open = Vec::new();
    for _ in 0..agentgw::admin::MAX_EVENT_STREAMS {
        let s = EventStream::connect(admin, &token, None, "").await;
        assert_eq!(s.status, 200);
        open.push(s);
    }
    let (status, body) = http(admin, "GET", "/api/events", Some(&token), None).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("event streams are open already"), "{body}");
    // The rest of the API still answers.
    assert_eq!(
        http(admin, "GET", "/api/sessions", Some(&token), None)
            .await
            .0,
        200
    );
}
