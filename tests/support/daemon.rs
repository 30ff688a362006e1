//! The real `agentgw` binary started for a test: `serve --demo` on a free port with its own
//! config and store, its admin API, its command line, and signals.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_agentgw");

/// The load generator's binary, built beside the gateway's by `cargo test` (a crate of the
/// same workspace).
pub fn load_bin() -> PathBuf {
    let bin = Path::new(BIN).with_file_name("agentgw-load");
    assert!(
        bin.exists(),
        "{} is missing: build it with `cargo build -p agentgw-load` (cargo test builds it)",
        bin.display()
    );
    bin
}

pub fn free_port() -> u16 {
    for _ in 0..50 {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port");
}

/// The `[store]` keys of nodes sharing the database at `url`: the URL and a pepper file made
/// for them (in the directory returned, to be kept while the nodes run).
pub fn shared_store(url: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let pepper: String = (0..32)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect();
    std::fs::write(dir.path().join("pepper"), pepper).unwrap();
    let store = format!(
        "url = \"{url}\"\npepper_file = \"{}\"",
        dir.path().join("pepper").display()
    );
    (dir, store)
}

pub struct Daemon {
    pub child: Child,
    /// Where the admin API listens.
    pub admin: String,
    pub config: PathBuf,
    pub port: u16,
    pub _dir: tempfile::TempDir,
}

impl Daemon {
    /// `agentgw serve --demo` on a free port, ringing 500 ms (as sip-scenarios/gateway.toml).
    pub fn start() -> Daemon {
        Daemon::start_with("", &[])
    }

    /// The same with more config (`extra` is TOML appended after [store]) and environment.
    pub fn start_with(extra: &str, env: &[(&str, &str)]) -> Daemon {
        Daemon::start_with_sip("", extra, env)
    }

    /// Like `start_with`, with more keys of `[sip]` (`sip`, lines ending in newlines).
    pub fn start_with_sip(sip: &str, extra: &str, env: &[(&str, &str)]) -> Daemon {
        Daemon::start_wrapped(sip, extra, env, &[])
    }

    /// Like `start_with_sip`, the binary run by the command `wrap` (e.g. setpriv; empty:
    /// none). The directory of config and store is open to any user.
    pub fn start_wrapped(sip: &str, extra: &str, env: &[(&str, &str)], wrap: &[&str]) -> Daemon {
        Daemon::start_full(sip, None, extra, env, wrap)
    }

    /// A node on a shared store: `store` is the `[store]` section's keys (a PostgreSQL URL
    /// and the pepper file all nodes use).
    pub fn start_on_store(store: &str, extra: &str) -> Daemon {
        Daemon::start_full("", Some(store), extra, &[], &[])
    }

    fn start_full(
        sip: &str,
        store: Option<&str>,
        extra: &str,
        env: &[(&str, &str)],
        wrap: &[&str],
    ) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = dir.path().join("agentgw.toml");
        let shared = store.is_some();
        let store = store.map_or_else(
            || {
                format!(
                    "url = \"sqlite://{}\"",
                    dir.path().join("agentgw.db").display()
                )
            },
            String::from,
        );
        std::fs::write(
            &config,
            format!(
                "[sip]\nlisten = [\"udp:127.0.0.1:{port}\", \"tcp:127.0.0.1:{port}\"]\nanswer_after_ms = 500\n{sip}\
                 [store]\n{store}\n[admin]\nlisten = \"127.0.0.1:0\"\n{extra}\n"
            ),
        )
        .unwrap();
        if !wrap.is_empty() {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        }
        // Nodes of a shared store keep their state (the admin token) apart.
        let state = dir.path().display().to_string();
        let mut env = env.to_vec();
        if shared {
            env.push(("STATE_DIRECTORY", state.as_str()));
        }
        let (child, admin) = Daemon::spawn(&config, port, &env, wrap);
        Daemon {
            child,
            admin,
            config,
            port,
            _dir: dir,
        }
    }

    /// Starts the process again on the same config and store (after it died).
    pub fn restart(&mut self) {
        (self.child, self.admin) = Daemon::spawn(&self.config, self.port, &[], &[]);
    }

    pub fn spawn(config: &Path, port: u16, env: &[(&str, &str)], wrap: &[&str]) -> (Child, String) {
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

    /// Where it takes SIP over UDP.
    pub fn sip_addr(&self) -> std::net::SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }

    /// A value of `/metrics` (the test fails when it is missing).
    pub fn metric(&self, name: &str) -> u64 {
        let (_, metrics) = self.http("GET", "/metrics", Some(&self.token()));
        crate::support::metric(&metrics, name).unwrap_or_else(|| panic!("no {name} in {metrics}"))
    }

    /// The admin token the daemon generated next to its store.
    pub fn token(&self) -> String {
        std::fs::read_to_string(self.config.with_file_name("admin-token")).unwrap()
    }

    /// One HTTP/1.1 request to the admin API; (status, body).
    pub fn http(&self, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
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

    pub fn cli(&self, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
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
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig}");
    }

    /// Waits for the process to exit; its exit code (None: still running after `secs`).
    pub fn wait_exit(&mut self, secs: u64) -> Option<i32> {
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

pub fn have(tool: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        crate::support::not_checked_loudly(&format!(
            "{tool} is not installed (apt-get install -y sip-tester; .ci/run installs it)"
        ));
    }
    found
}
