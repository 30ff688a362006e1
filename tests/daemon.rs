//! The real `agentgw` binary, driven from outside: the SIPp scenarios against `serve --demo`,
//! and the command line an administrator uses.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_agentgw");

fn free_port() -> u16 {
    for _ in 0..50 {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port");
}

struct Daemon {
    child: Child,
    /// Where the admin API listens.
    admin: String,
    config: PathBuf,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Daemon {
    /// `agentgw serve --demo` on a free port, ringing 500 ms (as sip-scenarios/gateway.toml).
    fn start() -> Daemon {
        Daemon::start_with("", &[])
    }

    /// The same with more config (`extra` is TOML appended after [store]) and environment.
    fn start_with(extra: &str, env: &[(&str, &str)]) -> Daemon {
        Daemon::start_with_sip("", extra, env)
    }

    /// Like `start_with`, with more keys of `[sip]` (`sip`, lines ending in newlines).
    fn start_with_sip(sip: &str, extra: &str, env: &[(&str, &str)]) -> Daemon {
        Daemon::start_wrapped(sip, extra, env, &[])
    }

    /// Like `start_with_sip`, the binary run by the command `wrap` (e.g. setpriv; empty:
    /// none). The directory of config and store is open to any user.
    fn start_wrapped(sip: &str, extra: &str, env: &[(&str, &str)], wrap: &[&str]) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = dir.path().join("agentgw.toml");
        std::fs::write(
            &config,
            format!(
                "[sip]\nlisten = [\"udp:127.0.0.1:{port}\", \"tcp:127.0.0.1:{port}\"]\nanswer_after_ms = 500\n{sip}\
                 [store]\nurl = \"sqlite://{}\"\n[admin]\nlisten = \"127.0.0.1:0\"\n{extra}\n",
                dir.path().join("agentgw.db").display()
            ),
        )
        .unwrap();
        if !wrap.is_empty() {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        }
        let (child, admin) = Daemon::spawn(&config, port, env, wrap);
        Daemon {
            child,
            admin,
            config,
            port,
            _dir: dir,
        }
    }

    /// Starts the process again on the same config and store (after it died).
    fn restart(&mut self) {
        (self.child, self.admin) = Daemon::spawn(&self.config, self.port, &[], &[]);
    }

    fn spawn(config: &Path, port: u16, env: &[(&str, &str)], wrap: &[&str]) -> (Child, String) {
        let mut command = match wrap.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(BIN);
                c
            }
            None => Command::new(BIN),
        };
        let mut child = command
            .args(["--config", config.to_str().unwrap(), "serve", "--demo"])
            .env("RUST_LOG", "info,rsipstack=warn,sqlx=warn")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let mut lines = BufReader::new(out).lines();
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut seen = vec![];
        while Instant::now() < deadline {
            match lines.next() {
                Some(Ok(l)) => {
                    let done = l.starts_with("admin API on ");
                    seen.push(l);
                    if done {
                        break;
                    }
                }
                _ => break,
            }
        }
        assert!(
            seen.iter()
                .any(|l| l.contains(&format!("listening for SIP on udp:127.0.0.1:{port}"))),
            "serve printed {seen:?}"
        );
        assert!(
            seen.iter().any(|l| l.contains("1001 / 1234")),
            "serve printed {seen:?}"
        );
        std::thread::spawn(move || for _ in lines.by_ref() {});
        let admin = seen
            .iter()
            .find_map(|l| l.strip_prefix("admin API on http://"))
            .and_then(|l| l.split('/').next())
            .unwrap_or_default()
            .to_string();
        (child, admin)
    }

    /// A value of `/metrics` (the test fails when it is missing).
    fn metric(&self, name: &str) -> u64 {
        let (_, metrics) = self.http("GET", "/metrics", Some(&self.token()));
        support::metric(&metrics, name).unwrap_or_else(|| panic!("no {name} in {metrics}"))
    }

    /// The admin token the daemon generated next to its store.
    fn token(&self) -> String {
        std::fs::read_to_string(self.config.with_file_name("admin-token")).unwrap()
    }

    /// One HTTP/1.1 request to the admin API; (status, body).
    fn http(&self, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
        use std::io::Read;
        let mut s = std::net::TcpStream::connect(&self.admin).unwrap();
        let auth = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n",
            self.admin
        )
        .unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        let status = resp.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
        let body = resp
            .split_once("\r\n\r\n")
            .map(|x| x.1.to_string())
            .unwrap_or_default();
        (status, body)
    }

    fn cli(&self, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
        let mut c = Command::new(BIN)
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(s) = stdin {
            c.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
        }
        drop(c.stdin.take());
        let o = c.wait_with_output().unwrap();
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).into(),
            String::from_utf8_lossy(&o.stderr).into(),
        )
    }
}

impl Daemon {
    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig}");
    }

    /// Waits for the process to exit; its exit code (None: still running after `secs`).
    fn wait_exit(&mut self, secs: u64) -> Option<i32> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status.code().unwrap_or(-1));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

fn have(tool: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        support::not_checked_loudly(&format!(
            "{tool} is not installed (apt-get install -y sip-tester; .ci/run installs it)"
        ));
    }
    found
}

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
    // Every command has --help.
    for args in [
        &["--help"][..],
        &["serve", "--help"],
        &["agent", "add", "--help"],
        &["session", "list", "--help"],
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

/// Whether this process may put a thread at real-time priority (root, CAP_SYS_NICE or an
/// RLIMIT_RTPRIO): tried on a thread of its own.
fn realtime_permitted() -> bool {
    std::thread::spawn(|| {
        let param = libc::sched_param { sched_priority: 1 };
        // SAFETY: the calling thread, which ends right after.
        unsafe { libc::pthread_setschedparam(libc::pthread_self(), libc::SCHED_RR, &param) == 0 }
    })
    .join()
    .unwrap()
}

/// `realtime_permitted()`, said loudly when not, for a test that `needs` real-time priority
/// (`needs`: what for); in CI, which runs as root, its absence fails the test.
fn realtime_or_say_so(needs: &str) -> bool {
    if realtime_permitted() {
        return true;
    }
    support::not_checked_loudly(&format!(
        "this user may not use real-time priority, which the test needs: {needs}"
    ));
    false
}

/// The scheduling policy and real-time priority of each of `pid`'s threads named `prefix*`
/// (fields 41 and 40 of /proc/PID/task/TID/stat; the name is read from `comm`).
fn thread_scheduling(pid: u32, prefix: &str) -> Vec<(u32, u32)> {
    let mut out = vec![];
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if !comm.starts_with(prefix) {
            continue;
        }
        let stat = std::fs::read_to_string(t.path().join("stat")).unwrap();
        // After the ")" closing the name: field 3 on, so field N is at N - 3.
        let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
        out.push((
            fields[41 - 3].parse().unwrap(),
            fields[40 - 3].parse().unwrap(),
        ));
    }
    out
}

/// The CI smoke run of the load generator: a few hundred complete logins against the real
/// binary; any call that does not end logged in fails it (the figures are for BENCHMARKS.md,
/// not for CI).
#[test]
fn load_smoke_run_every_call_logs_in() {
    // With three media threads at real-time priority (SCHED_RR 5).
    let d = Daemon::start_with(
        "[login]\nalready_logged_on = \"replace\"\n[log]\nfilter = \"warn\"\n\
         [media]\nthreads = 3\nrealtime_priority = 5\n",
        &[],
    );
    let media = thread_scheduling(d.child.id(), "agentgw-media-");
    assert_eq!(media.len(), 3, "{media:?}");
    // The async runtime: `[sip] threads` unset, half the cores (at least one).
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let workers = thread_scheduling(d.child.id(), "tokio-rt-worker");
    assert_eq!(workers.len(), (cores / 2).max(1), "{workers:?}");
    if realtime_permitted() {
        // Each thread sets its own scheduling as it starts.
        let rr = (libc::SCHED_RR as u32, 5);
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut media = media;
        while !media.iter().all(|&p| p == rr) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
            media = thread_scheduling(d.child.id(), "agentgw-media-");
        }
        assert!(media.iter().all(|&p| p == rr), "{media:?}");
        let (_, metrics) = d.http("GET", "/metrics", Some(&d.token()));
        assert!(
            metrics.contains("agentgw_media_realtime_threads 3"),
            "{metrics}"
        );
    } else {
        support::not_checked_loudly(
            "this user may not use real-time priority: the media threads' real-time priority (only the fallback to normal scheduling is checked)",
        );
        assert!(media.iter().all(|&p| p == (0, 0)), "{media:?}");
    }
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("agents.csv");
    std::fs::write(&csv, "number,passcode\n1001,1234\n1002,2345\n1003,3456\n").unwrap();
    let json = dir.path().join("summary.json");
    let out = Command::new(env!("CARGO_BIN_EXE_agentgw-load"))
        .arg(format!("127.0.0.1:{}", d.port))
        .args(["--calls", "200", "--rate", "50", "--type-ahead", "--csv"])
        .arg(&csv)
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stdout}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(summary["outcomes"]["logged-in"], 200, "{summary}");
    assert_eq!(summary["setup"]["count"], 200);
    assert_eq!(summary["rtp_lost"], 0, "{summary}");
}

/// What the systemd unit gives by default (`RestrictRealtime=yes`, no `LimitRTPRIO=`, no
/// capabilities, a system user): `realtime_priority` set but not permitted is a warning, not
/// a failure; the media threads run at normal priority and every call logs in. Run as
/// `nobody` with no capabilities when the tests run as root (CI), with RLIMIT_RTPRIO 0 either
/// way.
#[test]
fn real_time_media_not_permitted_runs_at_normal_priority_and_logs_in() {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let mut wrap = vec!["prlimit", "--rtprio=0:0"];
    if root {
        wrap.extend([
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
        ]);
    }
    for tool in ["prlimit", "setpriv"] {
        if Command::new(tool).arg("--version").output().is_err() {
            support::not_checked_loudly(&format!(
                "{tool} (util-linux) is missing: a gateway without real-time permission"
            ));
            return;
        }
    }
    // nobody must be able to run the binary where it was built (not under a private home).
    if root
        && !Command::new(wrap[2])
            .args(&wrap[3..])
            .args(["test", "-x", BIN])
            .status()
            .is_ok_and(|s| s.success())
    {
        support::not_checked_loudly(&format!(
            "user nobody cannot run {BIN} (a directory above it is private): a gateway without real-time permission"
        ));
        return;
    }
    let d = Daemon::start_wrapped(
        "",
        "[login]\nalready_logged_on = \"replace\"\n[media]\nthreads = 2\nrealtime_priority = 5\n",
        &[],
        &wrap,
    );
    let status = std::fs::read_to_string(format!("/proc/{}/status", d.child.id())).unwrap();
    if root {
        assert!(status.contains("Uid:\t65534\t"), "{status}");
    }
    // Each media thread tries as it starts; give them the time to.
    std::thread::sleep(Duration::from_millis(300));
    let media = thread_scheduling(d.child.id(), "agentgw-media-");
    assert_eq!(media.len(), 2, "{media:?}");
    if media.iter().any(|&p| p != (0, 0)) {
        // A user with CAP_SYS_NICE of its own (not root, so not dropped above).
        support::not_checked_loudly(&format!(
            "this user has real-time priority without RLIMIT_RTPRIO: {media:?}"
        ));
        return;
    }
    assert_eq!(d.metric("agentgw_media_realtime_threads"), 0);
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("summary.json");
    let out = Command::new(env!("CARGO_BIN_EXE_agentgw-load"))
        .arg(format!("127.0.0.1:{}", d.port))
        .args([
            "--calls",
            "20",
            "--rate",
            "20",
            "--type-ahead",
            "--agents",
            "1001-1001",
            "--passcode",
            "1234",
            "--json",
        ])
        .arg(&json)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(summary["outcomes"]["logged-in"], 20, "{summary}");
    assert_eq!(summary["rtp_lost"], 0, "{summary}");
}

/// The TIDs of `pid`'s threads named `prefix*`.
fn thread_ids(pid: u32, prefix: &str) -> Vec<i32> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.starts_with(prefix))
        })
        .filter_map(|t| t.file_name().to_str()?.parse().ok())
        .collect()
}

/// Pins thread `tid` (0: the calling thread) to CPU 0.
fn pin_to_cpu0(tid: i32) {
    // SAFETY: a zeroed cpu_set_t is empty; CPU_SET writes inside it; the kernel reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        assert_eq!(
            libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set),
            0,
            "sched_setaffinity({tid}): {}",
            std::io::Error::last_os_error()
        );
    }
}

#[test]
fn real_time_media_steps_down_while_sip_is_starved_and_comes_back() {
    if !realtime_or_say_so("the real-time guard, starving the gateway's async runtime") {
        return;
    }
    let d = Daemon::start_with(
        "[log]\nfilter = \"warn\"\n[media]\nthreads = 1\nrealtime_priority = 5\n",
        &[],
    );
    let wait_for = |d: &Daemon, name: &str, want: u64, within: Duration| {
        let deadline = Instant::now() + within;
        while d.metric(name) != want && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(d.metric(name), want, "{name} after {within:?}");
    };
    wait_for(
        &d,
        "agentgw_media_realtime_threads",
        1,
        Duration::from_secs(5),
    );
    // (No check that an idle gateway gives no sign: the other tests of this binary run
    // daemons beside this one, and a heartbeat 100 ms late on a busy 2-core box is a sign.)

    let signs_before = d.metric("agentgw_media_starvation_signs_total");
    // Starve the async runtime: its worker pinned to CPU 0, where a real-time busy loop
    // (SCHED_FIFO 1, below the media thread's 5) runs for 800 ms.
    let workers = thread_ids(d.child.id(), "tokio-rt-worker");
    assert!(!workers.is_empty());
    for &tid in &workers {
        pin_to_cpu0(tid);
    }
    let pid = d.child.id();
    let during = std::thread::spawn(move || {
        pin_to_cpu0(0);
        let param = libc::sched_param { sched_priority: 1 };
        // SAFETY: the calling thread, which ends after the loop.
        let r =
            unsafe { libc::pthread_setschedparam(libc::pthread_self(), libc::SCHED_FIFO, &param) };
        assert_eq!(r, 0);
        let start = Instant::now();
        // The media thread's scheduling after 500 ms, with the runtime still starved.
        let mut during = None;
        while start.elapsed() < Duration::from_millis(800) {
            if during.is_none() && start.elapsed() > Duration::from_millis(500) {
                during = Some(thread_scheduling(pid, "agentgw-media-"));
            }
            std::hint::spin_loop();
        }
        during.unwrap()
    })
    .join()
    .unwrap();
    // The media thread saw the heartbeat overdue and stepped down while the runtime could
    // not run to say so...
    assert_eq!(during, vec![(0, 0)], "still real-time while SIP starved");
    assert!(d.metric("agentgw_media_starvation_signs_total") > signs_before);
    assert_eq!(d.metric("agentgw_media_realtime_threads"), 0);
    let media = thread_scheduling(d.child.id(), "agentgw-media-");
    assert_eq!(media, vec![(0, 0)]);
    // ...and takes real time again after 5 s of calm (up to 10 s more if the busy machine
    // gave another sign meanwhile: the calm time doubles).
    wait_for(
        &d,
        "agentgw_media_realtime_threads",
        1,
        Duration::from_secs(25),
    );
    let media = thread_scheduling(d.child.id(), "agentgw-media-");
    assert_eq!(media, vec![(libc::SCHED_RR as u32, 5)]);
}

#[test]
fn new_calls_get_503_while_the_media_threads_are_behind_with_refuse_when_overloaded() {
    if !realtime_or_say_so("the overload refusal, holding the media thread back") {
        return;
    }
    let d = Daemon::start_with_sip(
        "refuse_when_overloaded = true\n",
        "[log]\nfilter = \"warn\"\n[media]\nthreads = 1\n",
        &[],
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", d.port).parse().unwrap();
    // A call answered at once while the media thread keeps time (another daemon of this
    // binary may be busy beside it: wait for the gauge first).
    let deadline = Instant::now() + Duration::from_secs(10);
    while d.metric("agentgw_overloaded") != 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    rt.block_on(async {
        let mut p = support::Phone::new(addr, support::PhoneOptions::default()).await;
        assert_eq!(p.call().await, 200);
        p.hangup().await;
    });
    // Hold the media thread back: pinned to CPU 0, where a real-time busy loop runs for
    // 1.5 s (the kernel may lend it the other core's real-time time, so the media thread
    // may not run at all meanwhile); SIP and this test run on the other core. When the
    // loop ends, the media thread's next tick is 1.5 s late: it is behind, and new calls
    // are refused for 2 s from then.
    for tid in thread_ids(d.child.id(), "agentgw-media-") {
        pin_to_cpu0(tid);
    }
    std::thread::spawn(|| {
        pin_to_cpu0(0);
        let param = libc::sched_param { sched_priority: 1 };
        // SAFETY: the calling thread, which ends after the loop.
        let r =
            unsafe { libc::pthread_setschedparam(libc::pthread_self(), libc::SCHED_FIFO, &param) };
        assert_eq!(r, 0);
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(1500) {
            std::hint::spin_loop();
        }
    })
    .join()
    .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let during = rt.block_on(async {
        let mut p = support::Phone::new(addr, support::PhoneOptions::default()).await;
        let status = p.call().await;
        let retry = p
            .invite_response
            .as_ref()
            .and_then(|r| r.header("Retry-After").map(String::from));
        if status == 200 {
            p.hangup().await;
        }
        (status, retry)
    });
    assert_eq!(
        during,
        (503, Some("2".to_string())),
        "a new call while behind"
    );
    assert!(d.metric("agentgw_calls_refused_overloaded_total") >= 1);
    // Back in time: answered again once the 2 s hold has passed.
    let deadline = Instant::now() + Duration::from_secs(10);
    let answered = rt.block_on(async {
        loop {
            let mut p = support::Phone::new(addr, support::PhoneOptions::default()).await;
            if p.call().await == 200 {
                p.hangup().await;
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    assert!(
        answered,
        "calls answered again after the media thread caught up"
    );
    assert_eq!(d.metric("agentgw_overloaded"), 0);
}

#[test]
fn the_load_generator_says_when_it_fell_behind() {
    let d = Daemon::start_with(
        "[login]\nalready_logged_on = \"replace\"\n[log]\nfilter = \"warn\"\n",
        &[],
    );
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("summary.json");
    let load = Command::new(env!("CARGO_BIN_EXE_agentgw-load"))
        .arg(format!("127.0.0.1:{}", d.port))
        .args(["--calls", "20", "--rate", "10", "--type-ahead"])
        .args(["--agents", "1001-1001", "--passcode", "1234"])
        .arg("--json")
        .arg(&json)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Stopped for 400 ms in the middle of the run, as a starved generator would be.
    std::thread::sleep(Duration::from_millis(800));
    let pid = load.id() as i32;
    // SAFETY: signals to our own child process.
    unsafe {
        assert_eq!(libc::kill(pid, libc::SIGSTOP), 0);
        std::thread::sleep(Duration::from_millis(400));
        assert_eq!(libc::kill(pid, libc::SIGCONT), 0);
    }
    let out = load.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let stall = summary["generator_max_stall_ms"].as_u64().unwrap();
    assert!(stall >= 300, "{summary}");
    assert!(summary["generator_late_ticks"].as_u64().unwrap() >= 1);
    assert!(stdout.contains("THE GENERATOR FELL BEHIND"), "{stdout}");
}
