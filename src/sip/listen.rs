//! Where SIP is accepted: `udp:0.0.0.0:5060`, `tcp:[::]:5060`, `tls:0.0.0.0:5061`.

use serde::Deserialize;
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

/// SIP transport of a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        })
    }
}

/// One SIP listener: `udp:0.0.0.0:5060`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenAddr {
    pub transport: Transport,
    pub addr: SocketAddr,
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.transport, self.addr)
    }
}

impl FromStr for ListenAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (t, rest) = s.split_once(':').ok_or_else(|| {
            format!("{s:?} is not TRANSPORT:ADDRESS:PORT, e.g. \"udp:0.0.0.0:5060\"")
        })?;
        let transport = match t.to_ascii_lowercase().as_str() {
            "udp" => Transport::Udp,
            "tcp" => Transport::Tcp,
            "tls" => Transport::Tls,
            other => return Err(format!("transport {other:?} is not one of udp, tcp, tls")),
        };
        let addr = rest.parse::<SocketAddr>().map_err(|_| {
            format!("{rest:?} is not ADDRESS:PORT (IPv6 in brackets: \"[::]:5060\")")
        })?;
        Ok(ListenAddr { transport, addr })
    }
}

impl<'de> Deserialize<'de> for ListenAddr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for ListenAddr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}
