//! The real `agentgw` binary, driven from outside: the SIPp scenarios against `serve --demo`,
//! and the command line an administrator uses.

#[path = "support/daemon.rs"]
mod daemon;
mod support;

use daemon::*;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn sipp_scenarios_pass_against_serve_demo_and_session_list_shows_the_agent() {
    if !have("sipp") {
        return;
    }
    let d = Daemon::start();
    let run = Path::new(env!("CARGO_MANIFEST_DIR")).join("sip-scenarios/run.sh");
    let out = Command::new(run)
        .arg(format!("127.0.0.1:{}", d.port))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "run.sh failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for s in [
        "options",
        "cancel",
        "login_success",
        "wrong_passcode",
        "login_info",
        "login_inband",
    ] {
        assert!(stdout.contains(&format!("PASS {s}")), "{stdout}");
    }
    let (ok, list, _) = d.cli(&["session", "list"], None);
    assert!(ok);
    let row = list
        .lines()
        .find(|l| l.starts_with("1001 "))
        .unwrap_or_else(|| panic!("{list}"));
    assert!(row.contains("sipp-station@127.0.0.1"), "{row}");
}

#[test]
fn administrator_manages_agents_and_sessions_from_the_command_line() {
    let d = Daemon::start();
    let (ok, out, err) = d.cli(
        &[
            "agent",
            "add",
            "2001",
            "--name",
            "Grace",
            "--passcode-stdin",
        ],
        Some("97531\n"),
    );
    assert!(ok, "{err}");
    assert!(out.contains("agent 2001 added"));
    let (_, list, _) = d.cli(&["agent", "list"], None);
    assert!(list.contains("2001") && list.contains("Grace"), "{list}");
    assert!(!list.contains("97531"), "a passcode must never be printed");
    let (ok, _, err) = d.cli(&["agent", "add", "2001", "--passcode", "1111"], None);
    assert!(!ok && err.contains("agent 2001 already exists"), "{err}");
    let (ok, _, err) = d.cli(&["agent", "add", "20x1", "--passcode", "1111"], None);
    assert!(!ok && err.contains("1 to 16 digits"), "{err}");
    let (ok, _, _) = d.cli(&["agent", "passcode", "2001", "--passcode", "2468"], None);
    assert!(ok);
    let (ok, _, err) = d.cli(&["session", "logout", "2001"], None);
    assert!(!ok && err.contains("not logged on"), "{err}");
    let (ok, _, err) = d.cli(
        &[
            "agent",
            "add",
            "2002",
            "--passcode",
            "8642",
            "--station",
            "desk-*@pbx",
            "--network",
            "10.0.0.0/8",
        ],
        None,
    );
    assert!(ok, "{err}");
    let (_, list, _) = d.cli(&["agent", "list"], None);
    let row = list.lines().find(|l| l.starts_with("2002 ")).unwrap();
    assert!(
        row.contains("stations desk-*@pbx") && row.contains("networks 10.0.0.0/8"),
        "{row}"
    );
    let (ok, out, _) = d.cli(&["agent", "unlock", "2002"], None);
    assert!(ok && out.contains("was not locked"), "{out}");
    let (ok, _, err) = d.cli(
        &[
            "agent",
            "add",
            "2003",
            "--passcode",
            "8642",
            "--network",
            "10.0.0.0/99",
        ],
        None,
    );
    assert!(!ok && err.contains("10.0.0.0/99"), "{err}");
    let (ok, _, _) = d.cli(&["agent", "remove", "2001"], None);
    assert!(ok);
    let (_, list, _) = d.cli(&["agent", "list"], None);
    assert!(!list.contains("2001"));
    let (ok, audit, _) = d.cli(&["audit", "--agent", "2001"], None);
    assert!(
        ok && audit.contains("agent_added") && audit.contains("passcode_changed"),
        "{audit}"
    );
    assert!(
        !audit.contains("97531") && !audit.contains("2468"),
        "no passcode in the audit"
    );
    let (ok, _, err) = d.cli(&["--tenant", "nope", "agent", "list"], None);
    assert!(!ok && err.contains("no [[tenant]] of that name"), "{err}");
    // Phone accounts: the password from standard input, never listed.
    let secret = "long phone password 1\n";
    let (ok, out, err) = d.cli(
        &["phone", "add", "desk-7", "--password-stdin"],
        Some(secret),
    );
    assert!(
        ok && out.contains("phone desk-7 added (realm agentgw)"),
        "{out}{err}"
    );
    let (ok, _, err) = d.cli(
        &["phone", "add", "desk-8", "--password-stdin"],
        Some("short"),
    );
    assert!(!ok && err.contains("12 to 128 characters"), "{err}");
    let (ok, list, _) = d.cli(&["phone", "list"], None);
    assert!(
        ok && list.contains("desk-7") && list.contains("agentgw"),
        "{list}"
    );
    assert!(!list.contains("long phone password"), "{list}");
    let (ok, _, _) = d.cli(&["phone", "remove", "desk-7"], None);
    assert!(ok);
    let (ok, _, err) = d.cli(&["phone", "remove", "desk-7"], None);
    assert!(!ok && err.contains("no phone account desk-7"), "{err}");
    // Every command has --help.
    for args in [
        &["--help"][..],
        &["serve", "--help"],
        &["agent", "add", "--help"],
        &["session", "list", "--help"],
        &["phone", "add", "--help"],
    ] {
        let (ok, out, _) = d.cli(args, None);
        assert!(ok && out.contains("Usage"), "{args:?}");
    }
}

#[test]
fn a_bad_config_names_the_file_the_key_and_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[login]\nmax_attempts = 0\n").unwrap();
    let o = Command::new(BIN)
        .args(["--config", path.to_str().unwrap(), "session", "list"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!(
            "{}: login.max_attempts: must be between 1 and 10",
            path.display()
        )),
        "{err}"
    );
}

#[test]
fn a_command_that_reads_creates_nothing_and_says_how_to_name_a_store() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["session", "list"][..],
        &["agent", "list"][..],
        &["audit"][..],
    ] {
        let o = Command::new(BIN)
            .current_dir(dir.path())
            .args(args)
            .output()
            .unwrap();
        assert!(!o.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("no store at agentgw.db")
                && err.contains("--db")
                && err.contains("--config"),
            "{args:?}: {err}"
        );
    }
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "files were created: {left:?}");
}

#[test]
fn config_check_prints_the_effective_config_or_the_error() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/agentgw.toml");
    let o = Command::new(BIN)
        .args(["config", "check"])
        .arg(&example)
        .output()
        .unwrap();
    assert!(o.status.success());
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("already_logged_on = \"reject\"") && out.contains("valid"),
        "{out}"
    );
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[sip]\nlisten = [\"udp:nowhere\"]\n").unwrap();
    let o = Command::new(BIN)
        .args(["config", "check"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("{}: sip.listen[0]: ", bad.display())),
        "{err}"
    );
    assert!(!err.contains("Stack backtrace"), "{err}");
    let o = Command::new(BIN).arg("--version").output().unwrap();
    let v = String::from_utf8_lossy(&o.stdout);
    assert!(
        v.starts_with("agentgw 0.1.0 (") && v.trim_end().ends_with(')'),
        "{v}"
    );
}

#[test]
fn systemd_hears_ready_status_watchdog_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut d = Daemon::start_with(
        "[gateway]\ndrain_secs = 2\n",
        &[
            ("NOTIFY_SOCKET", sock_path.to_str().unwrap()),
            ("WATCHDOG_USEC", "400000"),
        ],
    );
    let mut seen = String::new();
    let read_until = |seen: &mut String, what: &str, secs: u64| {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut buf = [0u8; 4096];
        while !seen.contains(what) && Instant::now() < deadline {
            if let Ok(n) = sock.recv(&mut buf) {
                seen.push_str(&String::from_utf8_lossy(&buf[..n]));
                seen.push('\n');
            }
        }
        seen.contains(what)
    };
    assert!(read_until(&mut seen, "READY=1", 10), "{seen}");
    assert!(read_until(&mut seen, "WATCHDOG=1", 5), "{seen}");
    assert!(read_until(&mut seen, "agents logged on", 5), "{seen}");
    d.signal("-TERM");
    assert!(read_until(&mut seen, "STOPPING=1", 5), "{seen}");
    assert_eq!(d.wait_exit(10), Some(0));
}

#[test]
fn sigterm_drains_logins_in_progress_refuses_new_calls_and_exits_0() {
    let mut d = Daemon::start_with("[gateway]\ndrain_secs = 20\n", &[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", d.port).parse().unwrap();
    rt.block_on(async {
        let mut a = support::Phone::new(addr, support::PhoneOptions::default()).await;
        assert_eq!(a.call().await, 200);
        a.press("1001#").await;
        d.signal("-TERM");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut b = support::Phone::new(addr, support::PhoneOptions::default()).await;
        assert_eq!(b.call().await, 503, "a new call during the drain");
        let options = b.options().await.unwrap();
        assert_eq!(
            options.status(),
            Some(503),
            "OPTIONS too, so PBXs fail over"
        );
        // A load balancer's readiness probe says so too; the process is still healthy.
        let (status, body) = d.http("GET", "/readyz", None);
        assert_eq!(
            (status, body.as_str()),
            (503, "draining: new calls are refused\n")
        );
        assert_eq!(d.http("GET", "/healthz", None).0, 200);
        a.press("1234#").await;
        assert_eq!(a.wait_for_bye(10).await.as_deref(), Some("logged-in"));
    });
    assert_eq!(d.wait_exit(15), Some(0));
    let (ok, list, _) = d.cli(&["session", "list"], None);
    assert!(ok && list.contains("1001 "), "the login finished: {list}");
}

#[test]
fn a_restart_closes_the_sessions_of_stay_lines_that_died_with_the_old_process() {
    let mut d = Daemon::start_with("[login]\nafter_login = \"stay\"\n", &[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", d.port).parse().unwrap();
    rt.block_on(async {
        let mut a = support::Phone::new(addr, support::PhoneOptions::default()).await;
        a.call().await;
        a.press("1002#2345#").await;
        a.expect_prompt(agentgw::media::prompts::PromptId::AgentLoginOk)
            .await;
    });
    let (_, list, _) = d.cli(&["session", "list"], None);
    assert!(list.contains("1002 "), "{list}");
    d.signal("-KILL");
    d.wait_exit(5);
    // Start again on the same config and store.
    d.restart();
    let (_, list, _) = d.cli(&["session", "list"], None);
    assert!(
        !list.contains("1002 "),
        "the dead stay line's session is closed: {list}"
    );
}

#[test]
fn sighup_applies_a_changed_prompt_and_rule_to_new_calls_and_refuses_a_broken_config() {
    let prompts = tempfile::tempdir().unwrap();
    let mut d = Daemon::start_with(
        &format!(
            "[prompts]\ndir = {:?}\n",
            prompts.path().display().to_string()
        ),
        &[],
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", d.port).parse().unwrap();
    let tone_frame = rt.block_on(async {
        let mut a = support::Phone::new(addr, support::PhoneOptions::default()).await;
        assert_eq!(a.call().await, 200);
        a.press("1001#").await;

        // A new agent-user recording and after_login = "stay", then SIGHUP.
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 8000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(prompts.path().join("agent-user.wav"), spec).unwrap();
        for n in 0..16000 {
            w.write_sample(((n as f32 * 0.25).sin() * 7000.0) as i16)
                .unwrap();
        }
        w.finalize().unwrap();
        let mut text = std::fs::read_to_string(&d.config).unwrap();
        text.push_str("[login]\nafter_login = \"stay\"\n");
        std::fs::write(&d.config, text).unwrap();
        d.signal("-HUP");
        tokio::time::sleep(Duration::from_millis(500)).await;

        // The call in progress keeps its rules: hung up after the login.
        a.press("1234#").await;
        assert_eq!(a.wait_for_bye(10).await.as_deref(), Some("logged-in"));

        // A new call hears the new prompt and stays up.
        let custom = agentgw::media::prompts::Catalog::load(Some(prompts.path())).unwrap();
        let frame = custom
            .get(agentgw::media::prompts::PromptId::AgentUser)
            .pcmu[5];
        let mut b = support::Phone::new(addr, support::PhoneOptions::default()).await;
        b.call().await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            b.received
                .lock()
                .unwrap()
                .iter()
                .any(|r| r.payload == frame),
            "new prompt"
        );
        b.press("1002#2345#").await;
        b.expect_prompt(agentgw::media::prompts::PromptId::AgentLoginOk)
            .await;
        assert_eq!(
            b.wait_for_bye(2).await,
            None,
            "the new rule: the line stays up"
        );
        b.hangup().await;
        frame
    });

    // A broken config is refused; the gateway goes on with the last good one.
    let mut text = std::fs::read_to_string(&d.config).unwrap();
    text.push_str("[login]\nmax_attempts = 0\n");
    std::fs::write(&d.config, text).unwrap();
    d.signal("-HUP");
    std::thread::sleep(Duration::from_millis(300));
    rt.block_on(async {
        let mut c = support::Phone::new(addr, support::PhoneOptions::default()).await;
        assert_eq!(c.call().await, 200);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(c
            .received
            .lock()
            .unwrap()
            .iter()
            .any(|r| r.payload == tone_frame));
        c.hangup().await;
    });
    assert_eq!(d.wait_exit(0), None, "still running");
}

#[test]
fn kill_9_during_a_storm_of_logins_leaves_only_complete_sessions() {
    let mut d = Daemon::start_with("[log]\nformat = \"json\"\n", &[]);
    for n in 0..20 {
        let (ok, _, err) = d.cli(
            &["agent", "add", &format!("30{n:02}"), "--passcode", "8642"],
            None,
        );
        assert!(ok, "{err}");
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", d.port).parse().unwrap();
    rt.block_on(async {
        let mut phones = Vec::new();
        for _ in 0..20 {
            let mut p = support::Phone::new(addr, support::PhoneOptions::default()).await;
            assert_eq!(p.call().await, 200);
            phones.push(p);
        }
        for (n, mut p) in phones.into_iter().enumerate() {
            tokio::spawn(async move { p.press(&format!("30{n:02}#8642#")).await });
        }
        // Kill while the checks and claims are running: once a few logins have completed.
        let db = d.config.with_file_name("agentgw.db");
        let watcher = agentgw::store::Store::open(&format!("sqlite://{}", db.display()), "watch")
            .await
            .unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        while watcher.count_sessions().await.unwrap_or(0) < 3
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        d.signal("-KILL");
    });
    d.wait_exit(5);
    d.restart();
    let db = d.config.with_file_name("agentgw.db");
    rt.block_on(async {
        let store = agentgw::store::Store::open(&format!("sqlite://{}", db.display()), "check")
            .await
            .unwrap();
        let sessions = store.list_sessions().await.unwrap();
        assert!((3..=20).contains(&sessions.len()), "{}", sessions.len());
        for s in &sessions {
            // A session exists only with the audit line of its login: one transaction.
            assert_eq!(
                store.audit_events(&s.agent, "login").await.unwrap(),
                1,
                "{s:?}"
            );
            assert!(!s.station.is_empty());
        }
        eprintln!(
            "{} of 20 logins had completed when the process was killed",
            sessions.len()
        );
    });
}

#[test]
fn the_admin_api_needs_the_token_lists_sessions_and_forces_a_logout() {
    let d = Daemon::start_with("[login]\nafter_login = \"stay\"\n", &[]);
    let token = d.token();
    assert!(token.len() >= 32);
    let mode = std::fs::metadata(d.config.with_file_name("admin-token"))
        .unwrap()
        .permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );
    assert_eq!(d.http("GET", "/healthz", None).0, 200);
    assert_eq!(d.http("GET", "/readyz", None).0, 200);
    assert_eq!(d.http("GET", "/api/sessions", None).0, 401);
    assert_eq!(
        d.http("GET", "/api/sessions", Some("not-the-token-at-all"))
            .0,
        401
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", d.port).parse().unwrap();
    rt.block_on(async {
        let mut p = support::Phone::new(addr, support::PhoneOptions::default()).await;
        p.call().await;
        p.press("1001#1234#").await;
        p.expect_prompt(agentgw::media::prompts::PromptId::AgentLoginOk)
            .await;
        let (status, body) = d.http("GET", "/api/sessions", Some(&token));
        assert_eq!(status, 200);
        let list: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(list[0]["agent"], "1001", "{body}");
        let (_, agents) = d.http("GET", "/api/agents", Some(&token));
        assert!(
            agents.contains("\"logged_on\":true") && !agents.contains("argon2"),
            "{agents}"
        );
        // Force logout: the stay line hears it and gets a BYE.
        let (status, body) = d.http("POST", "/api/sessions/1001/logout", Some(&token));
        assert_eq!(status, 200, "{body}");
        assert_eq!(p.wait_for_bye(10).await.as_deref(), Some("dropped"));
        assert!(
            p.heard_ids()
                .contains(&agentgw::media::prompts::PromptId::AdminLogout),
            "{:?}",
            p.heard()
        );
        assert_eq!(
            d.http("POST", "/api/sessions/1001/logout", Some(&token)).0,
            404
        );
        let (status, audit) = d.http("GET", "/api/audit?agent=1001&limit=5", Some(&token));
        assert_eq!(status, 200);
        assert!(audit.contains("logged out by an administrator"), "{audit}");
        let (status, body) = d.http("POST", "/api/agents/1002/unlock", Some(&token));
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("\"was_locked\":false"), "{body}");
        assert_eq!(
            d.http("POST", "/api/agents/9999/unlock", Some(&token)).0,
            404
        );
        let (status, metrics) = d.http("GET", "/metrics", Some(&token));
        assert_eq!(status, 200);
        assert!(
            metrics.contains("agentgw_sessions 0")
                && metrics.contains("agentgw_dtmf_keys_total{method=\"rfc4733\"} 10"),
            "{metrics}"
        );
    });
}

#[test]
fn the_cli_imports_agents_follows_the_audit_and_its_force_logout_drops_a_stay_line() {
    let d = Daemon::start_with("[login]\nafter_login = \"stay\"\n", &[]);
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.csv");
    std::fs::write(
        &bad,
        "number,name,passcode\n4001,Ida,4444\n40x2,Jo,5555\n4003,Kai,\n",
    )
    .unwrap();
    let (ok, _, err) = d.cli(&["agent", "import", bad.to_str().unwrap()], None);
    assert!(!ok, "{err}");
    assert!(
        err.contains("nothing was imported") && err.contains("line 3:") && err.contains("line 4:"),
        "{err}"
    );
    let (_, list, _) = d.cli(&["agent", "list"], None);
    assert!(!list.contains("4001"), "all or nothing: {list}");
    let good = dir.path().join("agents.json");
    std::fs::write(
        &good,
        r#"[{"number":"4001","name":"Ida","passcode":"4444"},{"number":"1001","name":"Renamed"}]"#,
    )
    .unwrap();
    let (ok, out, err) = d.cli(&["agent", "import", good.to_str().unwrap()], None);
    assert!(ok, "{err}");
    assert!(out.contains("1 agents created, 1 updated"), "{out}");

    // audit --follow prints what the daemon writes after it started.
    let mut follow = Command::new(BIN)
        .arg("--config")
        .arg(&d.config)
        .args(["audit", "--follow", "--limit", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = follow.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    std::thread::sleep(Duration::from_millis(500));

    let rt = tokio::runtime::Runtime::new().unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", d.port).parse().unwrap();
    rt.block_on(async {
        let mut p = support::Phone::new(addr, support::PhoneOptions::default()).await;
        p.call().await;
        p.press("4001#4444#").await;
        p.expect_prompt(agentgw::media::prompts::PromptId::AgentLoginOk)
            .await;
        // Another process (the CLI) forces the agent out: the daemon's stay line hears it.
        let (ok, out, err) = d.cli(&["session", "logout", "4001"], None);
        assert!(ok && out.contains("logged out"), "{err}");
        assert_eq!(p.wait_for_bye(10).await.as_deref(), Some("dropped"));
        assert!(
            p.heard_ids()
                .contains(&agentgw::media::prompts::PromptId::AdminLogout),
            "{:?}",
            p.heard()
        );
    });
    let mut lines = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
            lines.push(l);
        }
        if lines.iter().any(|l| l.contains(" logout ")) {
            break;
        }
    }
    let _ = follow.kill();
    let _ = follow.wait();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("4001") && l.contains(" login ")),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains(" logout ") && l.contains("logged out by an administrator")),
        "{lines:#?}"
    );
}

#[test]
fn a_lost_pepper_is_refused_rather_than_silently_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agentgw.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\nurl = \"sqlite://{}\"\n",
            dir.path().join("agentgw.db").display()
        ),
    )
    .unwrap();
    let cli = |args: &[&str]| {
        let o = Command::new(BIN)
            .arg("--config")
            .arg(&config)
            .args(args)
            .output()
            .unwrap();
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stderr).to_string(),
        )
    };
    let (ok, err) = cli(&["agent", "add", "2001", "--passcode", "97531"]);
    assert!(ok, "{err}");
    assert!(err.contains("passcode pepper generated in"), "{err}");
    let pepper = dir.path().join("agentgw.pepper");
    let mode = std::fs::metadata(&pepper).unwrap().permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );
    std::fs::remove_file(&pepper).unwrap();
    let (ok, err) = cli(&["agent", "list"]);
    assert!(!ok, "{err}");
    assert!(
        err.contains("agentgw.pepper: the pepper file is missing, but 1 agents' passcodes were hashed with one"),
        "{err}"
    );
    assert!(!pepper.exists(), "no new pepper written over a lost one");
}

#[test]
fn a_start_listening_on_udp_tcp_and_tls_logs_no_warning() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, _) = support::certificate(dir.path(), "gateway", "127.0.0.1");
    let (port, tls_port) = (free_port(), free_port());
    let config = dir.path().join("agentgw.toml");
    std::fs::write(
        &config,
        format!(
            "[sip]\nlisten = [\"udp:127.0.0.1:{port}\", \"tcp:127.0.0.1:{port}\", \"tls:127.0.0.1:{tls_port}\"]\n\
             tls_certificate = \"{}\"\ntls_private_key = \"{}\"\n\
             [store]\nurl = \"sqlite://{}\"\n[admin]\nlisten = \"127.0.0.1:0\"\n",
            cert.display(),
            key.display(),
            dir.path().join("agentgw.db").display()
        ),
    )
    .unwrap();
    let mut child = Command::new(BIN)
        .args(["--config", config.to_str().unwrap(), "serve", "--demo"])
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::BufRead;
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let printed: Vec<String> = lines
        .by_ref()
        .map_while(Result::ok)
        .take_while(|l| !l.starts_with("admin API on "))
        .collect();
    std::thread::spawn(move || for _ in lines {});
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    let tls = format!("listening for SIP on tls:127.0.0.1:{tls_port}");
    assert!(
        printed.iter().any(|l| l.contains(&tls)),
        "{printed:?}\n{log}"
    );
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .collect();
    assert!(warnings.is_empty(), "{warnings:#?}");
}
