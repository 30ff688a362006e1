//! systemd's notify protocol (sd_notify): READY=1, STATUS=…, WATCHDOG=1, STOPPING=1 as
//! datagrams to `$NOTIFY_SOCKET`. Without the variable (not under systemd) every call does
//! nothing.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// Where systemd listens for this service's notifications.
#[derive(Debug)]
pub struct Notifier {
    target: Option<(UnixDatagram, Target)>,
}

#[derive(Debug)]
enum Target {
    Path(std::path::PathBuf),
    Abstract(Vec<u8>),
}

impl Notifier {
    /// Reads `$NOTIFY_SOCKET` (a path, or `@name` for an abstract socket).
    pub fn from_env() -> Notifier {
        let target = std::env::var_os("NOTIFY_SOCKET").and_then(|v| {
            let v = v.to_string_lossy().to_string();
            let target = match v.strip_prefix('@') {
                Some(name) => Target::Abstract(name.as_bytes().to_vec()),
                None => Target::Path(v.into()),
            };
            UnixDatagram::unbound().ok().map(|s| (s, target))
        });
        Notifier { target }
    }

    /// Sends one notification (several `KEY=value` lines); errors are ignored, as systemd does.
    pub fn send(&self, message: &str) {
        let Some((socket, target)) = &self.target else {
            return;
        };
        let _ = match target {
            Target::Path(p) => socket.send_to(message.as_bytes(), p),
            Target::Abstract(name) => {
                use std::os::linux::net::SocketAddrExt;
                match std::os::unix::net::SocketAddr::from_abstract_name(name) {
                    Ok(addr) => socket.send_to_addr(message.as_bytes(), &addr),
                    Err(e) => Err(e),
                }
            }
        };
    }

    /// How often to send WATCHDOG=1: half of `$WATCHDOG_USEC`, when the watchdog is on for
    /// this process.
    pub fn watchdog_interval() -> Option<Duration> {
        let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
        if let Ok(pid) = std::env::var("WATCHDOG_PID") {
            if pid.parse::<u32>().ok()? != std::process::id() {
                return None;
            }
        }
        (usec > 0).then(|| Duration::from_micros(usec / 2))
    }
}
