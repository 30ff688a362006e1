//! The real `agentgw` binary, driven from outside: the SIPp scenarios against `serve --demo`,
//! and the command line an administrator uses.

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
    config: PathBuf,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Daemon {
    /// `agentgw serve --demo` on a free port, ringing 500 ms (as sip-scenarios/gateway.toml).
    fn start() -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = dir.path().join("agentgw.toml");
        std::fs::write(
            &config,
            format!(
                "[sip]\nlisten = [\"udp:127.0.0.1:{port}\", \"tcp:127.0.0.1:{port}\"]\nanswer_after_ms = 500\n\
                 [store]\nurl = \"sqlite://{}\"\n",
                dir.path().join("agentgw.db").display()
            ),
        )
        .unwrap();
        let mut child = Command::new(BIN)
            .args(["--config", config.to_str().unwrap(), "serve", "--demo"])
            .env("RUST_LOG", "info,rsipstack=warn,sqlx=warn")
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
                    let done = l.starts_with("call sip:login@");
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
        Daemon {
            child,
            config,
            port,
            _dir: dir,
        }
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
        assert!(
            std::env::var("CI").is_err(),
            "{tool} is missing on this CI machine: .ci/run must install it"
        );
        eprintln!(
            "\n*** SKIPPED LOUDLY: {tool} is not installed (apt-get install -y sip-tester) ***\n"
        );
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
