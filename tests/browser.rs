//! The status page in a real browser: Debian's Chromium, headless, driven over WebDriver
//! (chromedriver). An administrator signs in with the token, sees the agent a test phone just
//! logged on appear without a reload, clicks it, Force Logout, OK; the phone's line hears the
//! prompt and gets a BYE, and the row goes away. Screenshots are saved under
//! `target/browser-test/` and their paths printed.

mod support;

use agentgw::media::prompts::PromptId;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use support::{http, start_gateway_with, Phone, PhoneOptions};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// chromedriver and a browser session, ended on drop.
struct Browser {
    driver: Child,
    addr: SocketAddr,
    session: String,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Browser {
    /// None (with a loud message) when chromium or chromedriver is missing outside CI; in CI
    /// that is a failure.
    async fn start() -> Option<Browser> {
        let missing: Vec<&str> = ["/usr/bin/chromium", "/usr/bin/chromedriver"]
            .into_iter()
            .filter(|p| !std::path::Path::new(p).exists())
            .collect();
        if !missing.is_empty() {
            support::not_checked_loudly(&format!(
                "the browser test: {} missing (apt-get install -y chromium chromium-driver)",
                missing.join(", ")
            ));
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new("/usr/bin/chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let profile = tempfile::tempdir().unwrap();
        let mut b = Browser {
            driver,
            addr,
            session: String::new(),
            _profile: profile,
        };
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                         "--no-first-run", "--disable-background-networking",
                         "--disable-component-update", "--disable-sync",
                         "--window-size=1280,900",
                         format!("--user-data-dir={}", b._profile.path().display())]
            }
        }}});
        let v = b.call("POST", "/session", Some(caps)).await;
        b.session = v["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {v}"))
            .to_string();
        Some(b)
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let body = body.map(|b| b.to_string());
        let (status, text) = http(
            self.addr,
            method,
            path,
            None,
            body.as_deref().map(|b| ("application/json", b)),
        )
        .await;
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        assert_eq!(status, 200, "WebDriver {method} {path}: {text}");
        v["value"].clone()
    }

    async fn session_call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.call(method, &format!("/session/{}{path}", self.session), body)
            .await
    }

    async fn find(&self, css: &str) -> String {
        let v = self
            .session_call(
                "POST",
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        v[ELEMENT].as_str().unwrap().to_string()
    }

    async fn click(&self, css: &str) {
        let e = self.find(css).await;
        self.session_call("POST", &format!("/element/{e}/click"), Some(json!({})))
            .await;
    }

    async fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        self.session_call(
            "POST",
            &format!("/element/{e}/value"),
            Some(json!({"text": text})),
        )
        .await;
    }

    async fn script(&self, js: &str) -> Value {
        self.session_call(
            "POST",
            "/execute/sync",
            Some(json!({"script": js, "args": []})),
        )
        .await
    }

    /// Waits until `js` returns true.
    async fn until(&self, js: &str, secs: u64) -> bool {
        for _ in 0..secs * 10 {
            if self.script(js).await == Value::Bool(true) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    async fn screenshot(&self, name: &str) -> PathBuf {
        let b64 = self.session_call("GET", "/screenshot", None).await;
        let png = base64_decode(b64.as_str().unwrap());
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .unwrap()
            .join("browser-test");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, png).unwrap();
        println!("screenshot saved: {}", path.display());
        eprintln!("screenshot saved: {}", path.display());
        path
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let bytes: Vec<u8> = s
        .bytes()
        .filter(|c| *c != b'=' && !c.is_ascii_whitespace())
        .collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut n: u32 = 0;
        for (i, c) in chunk.iter().enumerate() {
            n |= (val(*c) as u32) << (18 - 6 * i);
        }
        out.push((n >> 16) as u8);
        if chunk.len() > 2 {
            out.push((n >> 8) as u8);
        }
        if chunk.len() > 3 {
            out.push(n as u8);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_administrator_sees_a_login_live_and_forces_the_agent_out() {
    let gw = start_gateway_with("127.0.0.1", |c| {
        c.login.after_login = agentgw::login::rules::AfterLogin::Stay;
    })
    .await;
    let (admin, token) = gw.start_admin().await;
    let Some(b) = Browser::start().await else {
        return;
    };
    b.session_call(
        "POST",
        "/url",
        Some(json!({"url": format!("http://{admin}/")})),
    )
    .await;
    // A wrong token is refused on the page.
    b.type_into("#token", "not-the-right-token").await;
    b.click("#login-btn").await;
    assert!(
        b.until(
            "return document.querySelector('#msg').textContent.includes('refused')",
            10
        )
        .await
    );
    b.type_into("#token", &token).await;
    b.click("#login-btn").await;
    assert!(
        b.until("return !document.querySelector('#view-status').hidden", 10)
            .await,
        "signed in"
    );
    assert!(
        b.until(
            "return document.querySelector('#live').className.includes('on')",
            10
        )
        .await
    );
    // Marks this page load: it must survive until the end (no reload).
    b.script("window.__loaded_once = true; return true").await;
    assert_eq!(
        b.script("return document.querySelectorAll('#status tbody tr').length")
            .await,
        json!(0)
    );

    // The phone logs 1001 on and stays on the line.
    let mut p = Phone::new(gw.udp, PhoneOptions::default()).await;
    p.call().await;
    p.press("1001#1234#").await;
    p.expect_prompt(PromptId::AgentLoginOk).await;
    assert!(
        b.until(
            "return !!document.querySelector('#status tbody tr[data-agent=\"1001\"]')",
            10
        )
        .await,
        "the row appears from the event stream"
    );
    assert_eq!(
        b.script("return window.__loaded_once === true").await,
        json!(true)
    );
    b.screenshot("status-page-logged-on.png").await;

    // Click the agent, Actions: Force Logout, confirm.
    b.click("#status tbody tr[data-agent=\"1001\"]").await;
    assert!(b.until("return !document.querySelector('#detail').hidden && !document.querySelector('#act-logout').disabled", 10).await);
    b.click("#act-logout").await;
    assert!(
        b.until("return document.querySelector('#confirm').open", 5)
            .await
    );
    b.screenshot("status-page-confirm.png").await;
    b.click("#confirm-ok").await;

    assert_eq!(p.wait_for_bye(10).await.as_deref(), Some("dropped"));
    assert!(
        p.heard_ids().contains(&PromptId::AdminLogout),
        "{:?}",
        p.heard()
    );
    assert!(
        b.until(
            "return !document.querySelector('#status tbody tr[data-agent=\"1001\"]')",
            10
        )
        .await,
        "the row goes away"
    );
    assert_eq!(
        b.script("return window.__loaded_once === true").await,
        json!(true)
    );
    assert!(gw.store.list_sessions().await.unwrap().is_empty());
    b.screenshot("status-page-after-logout.png").await;

    // A phone-sized screen still shows the table and the actions.
    b.session_call(
        "POST",
        "/window/rect",
        Some(json!({"width": 390, "height": 844})),
    )
    .await;
    b.click("#tab-agents").await;
    assert!(
        b.until(
            "return document.querySelectorAll('#agents tbody tr').length === 3",
            10
        )
        .await
    );
    b.screenshot("status-page-phone-agents.png").await;
    b.session_call("DELETE", "", None).await;
}
