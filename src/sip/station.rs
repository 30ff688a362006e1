//! Who is calling from where: the station identity (From, P-Asserted-Identity, a PBX's header),
//! the local address towards a source, and our Contact.

use super::*;

impl Acceptor {
    /// The caller's station: From user@host, or what the PBX asserts (P-Asserted-Identity, or
    /// a header it sets) when so configured and present.
    pub(super) fn station_of(&self, tx: &Transaction) -> String {
        let asserted = match self.settings.station_from {
            // The extension keyed replaces From later, in the login.
            StationFrom::From | StationFrom::Prompt => None,
            StationFrom::Pai => tx
                .original
                .header_value("P-Asserted-Identity")
                .and_then(|v| identity_of(&v)),
            StationFrom::Header => tx
                .original
                .header_value(&self.settings.station_header)
                .map(|v| v.trim().chars().take(MAX_STATION_CHARS).collect::<String>())
                .filter(|v| !v.is_empty()),
        };
        asserted.unwrap_or_else(|| from_station(tx))
    }
}

/// Longest station identity kept (a peer controls it).
pub(super) const MAX_STATION_CHARS: usize = 128;

/// `user@host` (or the number of a tel: URI) of a name-addr such as
/// `"Desk 7" <sip:2007@pbx.example:5060;user=phone>`.
pub(super) fn identity_of(value: &str) -> Option<String> {
    let uri = match (value.find('<'), value.find('>')) {
        (Some(a), Some(b)) if a < b => &value[a + 1..b],
        _ => value.trim(),
    };
    let rest = uri
        .strip_prefix("sip:")
        .or_else(|| uri.strip_prefix("sips:"))
        .or_else(|| uri.strip_prefix("tel:"))?;
    let rest = rest.split([';', '?']).next()?;
    let id = match rest.split_once('@') {
        Some((user, host)) => {
            let host = if host.starts_with('[') {
                host.split_inclusive(']').next().unwrap_or(host)
            } else {
                host.split(':').next().unwrap_or(host)
            };
            format!("{user}@{host}")
        }
        None => rest.to_string(),
    };
    (!id.is_empty()).then(|| id.chars().take(MAX_STATION_CHARS).collect())
}

/// From user@host: the caller's station.
pub(super) fn from_station(tx: &Transaction) -> String {
    let Ok(from) = tx.original.from_header() else {
        return String::new();
    };
    match from.uri() {
        Ok(uri) => {
            let host = uri.host_with_port.host.to_string();
            match uri.auth {
                Some(a) => format!("{}@{}", a.user, host),
                None => host,
            }
        }
        Err(_) => String::new(),
    }
}

/// The local address the caller reaches us on: the listener's configured address when it is
/// bound to one, else the address the kernel routes replies to the caller from.
pub(super) fn local_ip_towards(
    listen: &[ListenAddr],
    tx: &Transaction,
    source: SocketAddr,
) -> IpAddr {
    let bound = tx.connection.as_ref().and_then(|c| {
        let port = c.get_addr().get_socketaddr().ok()?.port();
        let transport = match c.transport() {
            rsipstack::sip::transport::Transport::Udp => Transport::Udp,
            _ => Transport::Tcp,
        };
        listen
            .iter()
            .find(|l| l.transport == transport && l.addr.port() == port)
            .map(|l| l.addr.ip())
            .filter(|ip| !ip.is_unspecified())
    });
    if let Some(ip) = bound {
        return ip;
    }
    let any: SocketAddr = if source.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    std::net::UdpSocket::bind(any)
        .and_then(|s| {
            s.connect(source)?;
            s.local_addr()
        })
        .map(|a| a.ip())
        .unwrap_or(any.ip())
}

pub(super) fn contact_uri(tx: &Transaction, ip: IpAddr) -> Option<rsipstack::sip::Uri> {
    let conn = tx.connection.as_ref()?;
    let port = conn.get_addr().get_socketaddr().ok()?.port();
    let host = match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    };
    let transport = match conn.transport() {
        rsipstack::sip::transport::Transport::Udp => "",
        _ => ";transport=tcp",
    };
    rsipstack::sip::Uri::try_from(format!("sip:agentgw@{host}:{port}{transport}").as_str()).ok()
}
