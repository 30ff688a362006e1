//! Debian's Kamailio, started with the shipped `deploy/kamailio/kamailio.cfg` in front of
//! gateway nodes on loopback, and stopped (with its children) when dropped.

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Kamailio {
    /// Where phones send their calls.
    pub addr: SocketAddr,
    child: Child,
    dir: tempfile::TempDir,
}

const BINARY: &str = "/usr/sbin/kamailio";

impl Kamailio {
    /// Kamailio on a free loopback port dispatching to `nodes` (probed every second); `None`,
    /// said loudly (a failure under CI), when Kamailio is not installed.
    pub fn start(nodes: &[SocketAddr]) -> Option<Kamailio> {
        if !Path::new(BINARY).exists() {
            crate::support::not_checked_loudly(
                "kamailio is not installed (apt-get install -y kamailio; .ci/run installs it)",
            );
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("dispatcher.list");
        let lines: String = nodes.iter().map(|n| format!("1 sip:{n}\n")).collect();
        std::fs::write(&list, lines).unwrap();
        let port = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        // The repository's file, from this crate or the load generator's beside it.
        let cfg = Path::new(env!("CARGO_MANIFEST_DIR"))
            .ancestors()
            .map(|d| d.join("deploy/kamailio/kamailio.cfg"))
            .find(|f| f.exists())
            .expect("deploy/kamailio/kamailio.cfg in the repository");
        let run = dir.path();
        let child = Command::new(BINARY)
            .arg("-f")
            .arg(&cfg)
            .args(["-DD", "-E", "-n", "2", "-m", "32", "-M", "4"])
            .arg("-Y")
            .arg(run)
            .arg("-P")
            .arg(run.join("kamailio.pid"))
            .arg("-A")
            .arg(format!("LISTEN=udp:{addr}"))
            .arg("-A")
            .arg(format!("DISPATCHER_LIST=\"{}\"", list.display()))
            .args(["-A", "PING_INTERVAL=1"])
            .arg("-A")
            .arg(format!("CTL_SOCKET=\"unix:{}\"", run.join("ctl").display()))
            .arg("-A")
            .arg(format!("RPC_FIFO=\"{}\"", run.join("rpc.fifo").display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(run.join("kamailio.log")).unwrap(),
            ))
            .spawn()
            .expect("kamailio starts");
        let mut k = Kamailio { addr, child, dir };
        k.wait_until_answering();
        Some(k)
    }

    /// Waits until Kamailio answers an OPTIONS to itself (it is up and routing).
    fn wait_until_answering(&mut self) {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let me = s.local_addr().unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("kamailio exited ({status}):\n{}", self.log());
            }
            let ping = format!(
                "OPTIONS sip:{a} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKping{n}\r\n\
                 Max-Forwards: 70\r\nFrom: <sip:test@{me}>;tag=t\r\nTo: <sip:{a}>\r\n\
                 Call-ID: ping{n}@test\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
                a = self.addr,
                n = rand::random::<u32>(),
            );
            s.send_to(ping.as_bytes(), self.addr).ok();
            if let Ok(n) = s.recv(&mut buf) {
                if buf[..n].starts_with(b"SIP/2.0 200") {
                    return;
                }
            }
        }
        panic!("kamailio did not answer within 15 s:\n{}", self.log());
    }

    /// What Kamailio logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("kamailio.log")).unwrap_or_default()
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        // SIGTERM: the main process stops its children and exits.
        Command::new("kill")
            .arg(self.child.id().to_string())
            .status()
            .ok();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child.kill().ok();
        self.child.wait().ok();
    }
}
