//! agentgw-load: simulated phones logging agents on, for load tests and benchmarks. See
//! `agentgw-load --help` and docs/operations.md, "Load testing".

use agentgw::media::prompts::Codec;
use agentgw::media::srtp::Suite;
use agentgw_load::sip::Signalling;
use agentgw_load::{self as load, LoadOptions, Outcome};
use anyhow::{bail, Context, Result};
use clap::Parser;
use std::io::{IsTerminal, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "agentgw-load",
    version,
    about = "Simulated phones: call a SIP login IVR, key agent numbers and passcodes as RFC 4733 events, classify and time every call"
)]
struct Args {
    /// The gateway: HOST:PORT.
    target: String,
    /// The Request-URI user to call.
    #[arg(long, default_value = "login")]
    user: String,
    /// Transport: udp, tcp or tls (SIP over TLS; give --tls-ca).
    #[arg(long, default_value = "udp")]
    transport: String,
    /// With --transport tls: the CA certificate (PEM) the gateway's certificate is checked
    /// against (for the target's IP address).
    #[arg(long, value_name = "FILE")]
    tls_ca: Option<PathBuf>,
    /// Offer SRTP with SDES keys of this suite, as RTP/SAVP: AES_CM_128_HMAC_SHA1_80,
    /// AES_CM_128_HMAC_SHA1_32 or AEAD_AES_128_GCM (the gateway sends keys only over TLS).
    #[arg(long, value_name = "SUITE")]
    srtp: Option<String>,
    /// Answer Digest challenges as phone accounts PREFIX1 … PREFIXN, in turn, all with
    /// --phone-password (e.g. made with `agentgw phone add`): PREFIX:N.
    #[arg(long, value_name = "PREFIX:N")]
    phone_accounts: Option<String>,
    /// The password of every --phone-accounts account.
    #[arg(
        long,
        default_value = "load-phone-password",
        env = "AGENTGW_LOAD_PHONE_PASSWORD"
    )]
    phone_password: String,
    /// New calls per second.
    #[arg(long, default_value_t = 10.0)]
    rate: f64,
    /// Calls up at once at most.
    #[arg(long, default_value_t = 1000)]
    concurrency: usize,
    /// Stop after this many calls.
    #[arg(long)]
    calls: Option<u64>,
    /// Stop starting calls after this many seconds.
    #[arg(long)]
    duration: Option<f64>,
    /// Agent numbers, FIRST-LAST (used in turn).
    #[arg(long, default_value = "1001-1003")]
    agents: String,
    /// The passcode of every agent of --agents; "same" uses the agent number itself.
    #[arg(long, default_value = "1234")]
    passcode: String,
    /// A CSV of number,passcode instead of --agents/--passcode.
    #[arg(long)]
    csv: Option<PathBuf>,
    /// Key everything right after the answer instead of after each prompt.
    #[arg(long)]
    type_ahead: bool,
    /// Keep each line up SECS after the login (agentgw's after_login = "stay"), then hang up.
    #[arg(long)]
    stay: Option<f64>,
    /// pcmu or pcma.
    #[arg(long, default_value = "pcmu")]
    codec: String,
    /// Send no audio (only the key events); a phone normally sends 20 ms frames all along.
    #[arg(long)]
    no_audio: bool,
    /// Offer comfort noise (CN).
    #[arg(long)]
    cn: bool,
    /// Longest a call may take, seconds (not counting --stay).
    #[arg(long, default_value_t = 60.0)]
    call_timeout: f64,
    /// Another IVR (prompts not agentgw's): OUTCOME=FROM-TO, the call's outcome when the IVR
    /// hangs up FROM to TO seconds after the last key (repeatable; e.g. logged-in=0.5-2
    /// incorrect=2-6); a hang-up no range holds is peer-hung-up.
    #[arg(long, value_name = "OUTCOME=FROM-TO")]
    ivr_hangup: Vec<String>,
    /// Another IVR: the outcome when it answers the passcode and then waits on the line
    /// (3 s of silence without hanging up), as an IVR does that asks again after a refusal.
    #[arg(long, default_value = "incorrect", value_name = "OUTCOME")]
    ivr_waits: String,
    /// The outcome every call should have; the exit status is 1 when any other happened.
    #[arg(long, default_value = "logged-in")]
    expect: String,
    /// Write the summary as JSON to FILE.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Worker threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Print the agents as CSV (number,passcode) for `agentgw agent import` and exit.
    #[arg(long)]
    print_agents_csv: bool,
}

/// `--ivr-hangup OUTCOME=FROM-TO` (seconds).
fn ivr_hangup(rule: &str) -> Result<(Outcome, Duration, Duration)> {
    let bad = || format!("--ivr-hangup {rule}: OUTCOME=FROM-TO, e.g. logged-in=0.5-2");
    let (o, range) = rule.split_once('=').with_context(bad)?;
    let o = Outcome::parse(o).with_context(bad)?;
    let (from, to) = range.split_once('-').with_context(bad)?;
    let secs = |v: &str| -> Result<Duration> {
        let v: f64 = v.trim().parse().ok().with_context(bad)?;
        Duration::try_from_secs_f64(v).ok().with_context(bad)
    };
    let (from, to) = (secs(from)?, secs(to)?);
    if to <= from {
        bail!("{}: FROM must be below TO", bad());
    }
    Ok((o, from, to))
}

fn agents(a: &Args) -> Result<Vec<(String, String)>> {
    if let Some(f) = &a.csv {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?;
        return load::read_agents_csv(&text).map_err(|e| anyhow::anyhow!("{}: {e}", f.display()));
    }
    let (first, last) = a
        .agents
        .split_once('-')
        .unwrap_or((a.agents.as_str(), a.agents.as_str()));
    let (first, last): (u64, u64) = (
        first
            .parse()
            .context("--agents: FIRST-LAST agent numbers")?,
        last.parse().context("--agents: FIRST-LAST agent numbers")?,
    );
    if last < first || last - first > 1_000_000 {
        bail!("--agents {}: FIRST-LAST with FIRST <= LAST", a.agents);
    }
    Ok((first..=last)
        .map(|n| {
            let p = if a.passcode == "same" {
                n.to_string()
            } else {
                a.passcode.clone()
            };
            (n.to_string(), p)
        })
        .collect())
}

/// The local address that reaches `target`.
fn local_ip(target: SocketAddr) -> std::net::IpAddr {
    let bind = if target.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    std::net::UdpSocket::bind(bind)
        .and_then(|s| s.connect(target).map(|_| s))
        .and_then(|s| s.local_addr())
        .map(|a| a.ip())
        .unwrap_or(if target.is_ipv4() {
            [127, 0, 0, 1].into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        })
}

fn signalling(a: &Args) -> Result<Signalling> {
    Ok(match (a.transport.as_str(), &a.tls_ca) {
        ("udp", None) => Signalling::Udp,
        ("tcp", None) => Signalling::Tcp,
        ("tls", Some(ca)) => {
            let pem = std::fs::read(ca).with_context(|| format!("cannot read {}", ca.display()))?;
            Signalling::tls(&pem).map_err(|e| anyhow::anyhow!("--tls-ca {}: {e}", ca.display()))?
        }
        ("tls", None) => bail!("--transport tls needs --tls-ca FILE"),
        (_, Some(_)) => bail!("--tls-ca is for --transport tls"),
        (t, None) => bail!("--transport {t}: udp, tcp or tls"),
    })
}

/// `--phone-accounts PREFIX:N`: (PREFIX1, password) … (PREFIXN, password).
fn phone_accounts(a: &Args) -> Result<Vec<(String, String)>> {
    let Some(spec) = &a.phone_accounts else {
        return Ok(vec![]);
    };
    let bad = || format!("--phone-accounts {spec}: PREFIX:N, e.g. load:50");
    let (prefix, n) = spec.rsplit_once(':').with_context(bad)?;
    let n: usize = n.parse().ok().filter(|n| *n > 0).with_context(bad)?;
    Ok((1..=n)
        .map(|i| (format!("{prefix}{i}"), a.phone_password.clone()))
        .collect())
}

fn main() -> Result<()> {
    let a = Args::parse();
    let agents = agents(&a)?;
    if a.print_agents_csv {
        let mut out = std::io::stdout().lock();
        writeln!(out, "number,passcode")?;
        for (n, p) in &agents {
            writeln!(out, "{n},{p}")?;
        }
        return Ok(());
    }
    let target: SocketAddr = a
        .target
        .to_socket_addrs()
        .with_context(|| format!("target {:?}: HOST:PORT", a.target))?
        .next()
        .context("target resolves to no address")?;
    let codec = match a.codec.as_str() {
        "pcmu" => Codec::Pcmu,
        "pcma" => Codec::Pcma,
        c => bail!("--codec {c}: pcmu or pcma"),
    };
    let expect = Outcome::parse(&a.expect)
        .with_context(|| format!("--expect {}: an outcome such as logged-in", a.expect))?;
    let ivr_waits = Outcome::parse(&a.ivr_waits)
        .with_context(|| format!("--ivr-waits {}: an outcome such as incorrect", a.ivr_waits))?;
    let ivr_hangup = a
        .ivr_hangup
        .iter()
        .map(|r| ivr_hangup(r))
        .collect::<Result<Vec<_>>>()?;
    if a.rate.is_nan() || a.rate <= 0.0 {
        bail!("--rate must be above 0");
    }
    let opts = LoadOptions {
        target,
        uri_user: a.user.clone(),
        signalling: signalling(&a)?,
        srtp: match &a.srtp {
            None => None,
            Some(name) => Some(Suite::of(name).with_context(|| {
                format!("--srtp {name}: AES_CM_128_HMAC_SHA1_80, AES_CM_128_HMAC_SHA1_32 or AEAD_AES_128_GCM")
            })?),
        },
        phone_accounts: phone_accounts(&a)?,
        rate: a.rate,
        concurrency: a.concurrency,
        calls: a.calls,
        duration: a.duration.map(Duration::from_secs_f64),
        agents,
        type_ahead: a.type_ahead,
        stay: a.stay.map(Duration::from_secs_f64),
        codec,
        send_audio: !a.no_audio,
        comfort_noise: a.cn,
        call_timeout: Duration::from_secs_f64(a.call_timeout),
        local_ip: local_ip(target),
        ivr_hangup,
        ivr_waits,
    };
    if opts.calls.is_none() && opts.duration.is_none() {
        bail!("give --calls N or --duration SECS");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(a.threads.max(1))
        .enable_all()
        .build()?;
    let tty = std::io::stderr().is_terminal();
    let summary = rt.block_on(load::run(opts, |s, t| {
        use std::sync::atomic::Ordering::Relaxed;
        let started = s.started.load(Relaxed);
        let finished = s.finished.load(Relaxed);
        let line = format!(
            "{:>6.1}s started {started} finished {finished} up {} ({:.0} calls/s)",
            t.as_secs_f64(),
            started.saturating_sub(finished),
            started as f64 / t.as_secs_f64().max(1e-9)
        );
        if tty {
            eprint!("\r{line}   ");
        } else {
            eprintln!("{line}");
        }
    }))?;
    if tty {
        eprintln!();
    }
    print!("{}", summary.table());
    if let Some(f) = &a.json {
        std::fs::write(f, serde_json::to_string_pretty(&summary)?)
            .with_context(|| format!("cannot write {}", f.display()))?;
    }
    let disturbed = summary.disturbed_seconds(expect, Duration::from_secs(1));
    if !disturbed.is_empty() {
        println!(
            "seconds with a call not {} or set up in over 1 s:",
            expect.as_str()
        );
        for line in disturbed.iter().take(60) {
            println!("{line}");
        }
    }
    let failures = summary.failures(expect);
    if failures > 0 {
        eprintln!(
            "{failures} of {} calls did not end {}",
            summary.calls,
            expect.as_str()
        );
        std::process::exit(1);
    }
    Ok(())
}
