use super::*;
use crate::login::rules::{AlreadyLoggedOnPolicy, SameStationPolicy};
use crate::media::dtmf::DtmfMethod;
use crate::media::rtp::PortRange;

#[test]
fn empty_file_gives_every_default() {
    let c = Config::parse("", "x.toml").unwrap();
    assert_eq!(c.sip.listen.len(), 2);
    assert_eq!(c.login.max_attempts, 3);
    assert_eq!(
        c.media.rtp_ports,
        PortRange {
            low: 20000,
            high: 29999
        }
    );
    assert_eq!(c.store.url, "sqlite://agentgw.db");
}

#[test]
fn unknown_key_names_file_and_key() {
    let e = Config::parse("[login]\nmax_atempts = 3\n", "/etc/agentgw.toml").unwrap_err();
    let s = e.to_string();
    assert!(s.starts_with("/etc/agentgw.toml: login"), "{s}");
    assert!(s.contains("max_atempts"), "{s}");
    assert!(
        s.contains("max_attempts"),
        "the allowed keys are listed: {s}"
    );
}

#[test]
fn bad_value_names_the_key_and_what_is_allowed() {
    let e = Config::parse("[sip]\nlisten = [\"sctp:0.0.0.0:5060\"]\n", "a.toml").unwrap_err();
    assert!(e.to_string().starts_with("a.toml: sip.listen[0]: "), "{e}");
    assert!(e.to_string().contains("udp, tcp"), "{e}");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(Config::default().sip.runtime_threads(), (cores / 2).max(1));
    let c = Config::parse("[sip]\nthreads = 3\n", "a.toml").unwrap();
    assert_eq!(c.sip.runtime_threads(), 3);
    let e = Config::parse("[sip]\nthreads = 1000\n", "a.toml").unwrap_err();
    assert!(
        e.to_string()
            .starts_with("a.toml: sip.threads: must be at most 256"),
        "{e}"
    );
    let e = Config::parse("[media]\nrealtime_priority = 100\n", "a.toml").unwrap_err();
    assert!(
        e.to_string()
            .starts_with("a.toml: media.realtime_priority: must be 0"),
        "{e}"
    );
    let e = Config::parse("[media]\nrtp_ports = \"30000-20000\"\n", "a.toml").unwrap_err();
    assert!(
        e.to_string().starts_with("a.toml: media.rtp_ports: "),
        "{e}"
    );
    let e = Config::parse("[login]\nmax_attempts = 0\n", "a.toml").unwrap_err();
    assert_eq!(
        e.to_string(),
        "a.toml: login.max_attempts: must be between 1 and 10"
    );
    let e = Config::parse("[login]\nmax_digits = \"x\"\n", "a.toml").unwrap_err();
    assert!(
        e.to_string().starts_with("a.toml: login.max_digits: "),
        "{e}"
    );
    let hook = |extra: &str| {
        Config::parse(
            &format!("[[webhook]]\nurl = \"http://127.0.0.1:9/x\"\nsecret = \"0123456789abcdef\"\n{extra}"),
            "a.toml",
        )
    };
    assert!(hook("").is_ok());
    let e = hook("events = [\"logon\"]\n").unwrap_err().to_string();
    assert!(
        e.starts_with("a.toml: webhook[0].events: \"logon\" is not an event"),
        "{e}"
    );
    let e = Config::parse(
        "[[webhook]]\nurl = \"https://x\"\nsecret = \"0123456789abcdef\"\n",
        "a.toml",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.starts_with("a.toml: webhook[0].url: https is not supported"),
        "{e}"
    );
    let e = Config::parse(
        "[[webhook]]\nurl = \"http://x\"\nsecret = \"short\"\n",
        "a.toml",
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        e,
        "a.toml: webhook[0].secret: must be at least 16 characters"
    );
}

#[test]
fn the_commented_example_is_valid_and_says_the_defaults() {
    let text = include_str!("../../systemd/agentgw.toml");
    let c = Config::parse(text, "systemd/agentgw.toml").unwrap();
    let d = Config::default();
    assert_eq!(c.sip.listen, d.sip.listen);
    assert_eq!(c.sip.max_calls, d.sip.max_calls);
    assert_eq!(c.media.rtp_ports, d.media.rtp_ports);
    assert_eq!(c.store.url, d.store.url);
    assert_eq!(c.login.max_digits, d.login.max_digits);
}

#[test]
fn dtmf_methods_are_checked() {
    let c = Config::parse("[dtmf]\nmethods = [\"info\"]\n", "a").unwrap();
    assert_eq!(c.dtmf.methods, vec![DtmfMethod::Info]);
    let e = Config::parse("[dtmf]\nmethods = [\"sip-info\"]\n", "a").unwrap_err();
    assert!(e.to_string().starts_with("a: dtmf.methods[0]: "), "{e}");
    assert!(Config::parse("[dtmf]\nmethods = []\n", "a").is_err());
}

#[test]
fn login_rules_parse_with_what_is_allowed_in_errors() {
    let c = Config::parse(
        "[login]\nalready_logged_on = \"confirm\"\nsame_station = \"replace\"\nallowed_networks = [\"10.0.0.0/8\"]\n",
        "a",
    )
    .unwrap();
    assert_eq!(c.login.already_logged_on, AlreadyLoggedOnPolicy::Confirm);
    assert_eq!(c.login.same_station, SameStationPolicy::Replace);
    assert_eq!(c.login.allowed_networks.len(), 1);
    let e = Config::parse("[login]\nalready_logged_on = \"kick\"\n", "a")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("a: login.already_logged_on: ") && e.contains("reject"),
        "{e}"
    );
    let e = Config::parse("[login]\nallowed_networks = [\"10.0.0.0/99\"]\n", "a")
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("a: login.allowed_networks[0]: "), "{e}");
}

#[test]
fn the_number_dialed_picks_the_tenant() {
    let c = Config::parse(
        "[[tenant]]\nname = \"acme\"\nnumbers = [\"login-acme\", \"+15551230000\"]\nlogout_numbers = [\"logout-acme\"]\nlanguage = \"es\"\nalready_logged_on = \"replace\"\n",
        "a",
    )
    .unwrap();
    assert_eq!(
        c.route("login-acme").already_logged_on,
        AlreadyLoggedOnPolicy::Replace
    );
    assert_eq!(
        c.route("login").already_logged_on,
        AlreadyLoggedOnPolicy::Reject
    );
    let r = c.route("+15551230000");
    assert_eq!(
        (r.tenant.as_str(), r.logout, r.language.as_str()),
        ("acme", false, "es")
    );
    assert!(c.route("logout-acme").logout);
    let r = c.route("login");
    assert_eq!(
        (r.tenant.as_str(), r.logout, r.language.as_str()),
        ("default", false, "en")
    );
    assert!(c.route("logout").logout);
    assert_eq!(c.languages(), vec!["en", "es"]);
    let e = Config::parse("[[tenant]]\nname = \"a b\"\nnumbers = [\"x\"]\n", "a").unwrap_err();
    assert!(e.to_string().starts_with("a: tenant[0].name: "), "{e}");
    let e = Config::parse("[[tenant]]\nname = \"a\"\nnumbers = [\"x\"]\n[[tenant]]\nname = \"b\"\nnumbers = [\"x\"]\n", "a").unwrap_err();
    assert!(e.to_string().contains("used twice"), "{e}");
}

#[test]
fn an_asserted_station_needs_the_trusted_networks_it_comes_from() {
    let e = Config::parse(
        "[login]\nstation = \"pai\"\n[sip]\ntrusted_networks = []\n",
        "a",
    )
    .unwrap_err();
    assert!(
        e.to_string().starts_with("a: sip.trusted_networks: "),
        "{e}"
    );
    let c = Config::parse(
        "[login]\nstation = \"header\"\n[sip]\ntrusted_networks = [\"192.0.2.20/32\"]\n",
        "a",
    )
    .unwrap();
    assert_eq!(c.sip.trusted_networks.len(), 1);
}

#[test]
fn callers_outside_the_host_authenticate_by_default_in_a_realm_that_is_checked() {
    let c = Config::default();
    assert_eq!(c.sip.authenticate, crate::digest::Authenticate::Untrusted);
    let loopback = |ip: &str| {
        c.sip
            .trusted_networks
            .iter()
            .any(|n| n.contains(ip.parse().unwrap()))
    };
    assert!(loopback("127.0.0.1") && loopback("::1") && !loopback("192.0.2.7"));
    let e = Config::parse("[sip]\nrealm = \"a b\"\n", "a").unwrap_err();
    assert!(e.to_string().starts_with("a: sip.realm: "), "{e}");
    let e = Config::parse("[sip]\nauthenticate = \"maybe\"\n", "a").unwrap_err();
    assert!(e.to_string().contains("sip.authenticate"), "{e}");
    for bad in ["[]", "[\"MD5\", \"MD5\"]", "[\"SHA-512\"]"] {
        let e = Config::parse(&format!("[sip]\ndigest_algorithms = {bad}\n"), "a").unwrap_err();
        assert!(
            e.to_string().contains("sip.digest_algorithms"),
            "{bad}: {e}"
        );
    }
    let c = Config::parse("[sip]\ndigest_algorithms = [\"MD5\", \"SHA-256\"]\n", "a").unwrap();
    assert_eq!(c.sip.digest_algorithms[0], crate::digest::Algorithm::Md5);
}

#[test]
fn ipv6_listener_parses() {
    let c = Config::parse("[sip]\nlisten = [\"udp:[::1]:5070\"]\n", "a").unwrap();
    assert_eq!(c.sip.listen[0].addr, "[::1]:5070".parse().unwrap());
}
