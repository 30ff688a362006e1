//! Who is calling from where: the station identity (From, P-Asserted-Identity, a PBX's header),
//! the local address towards a source, and our Contact.

use super::*;

impl Acceptor {
    /// The caller's station: From user@host, or what a PBX asserts (P-Asserted-Identity, or
    /// a header it sets) when so configured, present, and sent from `[sip] trusted_networks`;
    /// an asserted value that is neither a user@host nor a number is an error naming it.
    pub(super) fn station_of(&self, tx: &Transaction, source: IpAddr) -> Result<String, String> {
        let trusted = self.settings.trusted.iter().any(|n| n.contains(source));
        let asserted = match self.settings.station_from {
            // The extension keyed replaces From later, in the login.
            StationFrom::From | StationFrom::Prompt => None,
            _ if !trusted => None,
            StationFrom::Pai => tx
                .original
                .header_value("P-Asserted-Identity")
                .map(|v| identity_of(&v).ok_or(("P-Asserted-Identity", v))),
            StationFrom::Header => {
                let name = &self.settings.station_header;
                tx.original
                    .header_value(name)
                    .map(|v| station_value(&v).ok_or((name.as_str(), v)))
            }
        };
        match asserted {
            None => Ok(from_station(tx)),
            Some(Ok(station)) => Ok(station),
            Some(Err((header, value))) => {
                let value: String = value.chars().take(MAX_STATION_CHARS).collect();
                Err(format!(
                    "{header} {value:?} is not a station (user@host or a number)"
                ))
            }
        }
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

/// A station header's value (`desk-42`, `2001@pbx.example`, `+15551230007`): a user, a
/// user@host or a number of letters, digits and `-_.+*#`, at most `MAX_STATION_CHARS`.
pub(super) fn station_value(value: &str) -> Option<String> {
    let v = value.trim();
    let part_ok = |p: &str| {
        !p.is_empty()
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.+*#:[]".contains(c))
    };
    let ok = v.len() <= MAX_STATION_CHARS
        && match v.split_once('@') {
            Some((user, host)) => part_ok(user) && part_ok(host),
            None => part_ok(v) && !v.contains(':'),
        };
    ok.then(|| v.to_string())
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

/// The local address the caller reaches us on: the address of the listener the request came
/// to when it is bound to one (with listeners of both families on one port, the caller's
/// family's), else the address the kernel routes replies to the caller from.
pub(super) fn local_ip_towards(
    listen: &[ListenAddr],
    tx: &Transaction,
    source: SocketAddr,
) -> IpAddr {
    let bound = tx.connection.as_ref().and_then(|c| {
        let port = c.get_addr().get_socketaddr().ok()?.port();
        let transport = match c.transport() {
            rsipstack::sip::transport::Transport::Udp => Transport::Udp,
            rsipstack::sip::transport::Transport::Tls => Transport::Tls,
            _ => Transport::Tcp,
        };
        listen
            .iter()
            .filter(|l| l.transport == transport && l.addr.port() == port)
            .map(|l| l.addr.ip())
            .find(|ip| !ip.is_unspecified() && ip.is_ipv4() == source.is_ipv4())
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
    // Over TLS: a SIPS Contact when the request's URI was one (RFC 3261 §8.1.1.8), else a
    // SIP URI with transport=tls.
    let (scheme, transport) = match conn.transport() {
        rsipstack::sip::transport::Transport::Udp => ("sip", ""),
        rsipstack::sip::transport::Transport::Tls => match tx.original.uri.scheme {
            Some(rsipstack::sip::Scheme::Sips) => ("sips", ""),
            _ => ("sip", ";transport=tls"),
        },
        _ => ("sip", ";transport=tcp"),
    };
    rsipstack::sip::Uri::try_from(format!("{scheme}:agentgw@{host}:{port}{transport}").as_str())
        .ok()
}
