//! The `agentgw` command line: serve, manage agents, list and end sessions.

use agentgw::admin::GatewayStatus;
use agentgw::config::Config;
use agentgw::login::rules::Network;
use agentgw::login::Passcode;
use agentgw::notify::Notifier;
use agentgw::sip::Transport;
use agentgw::store::Store;
use agentgw::Gateway;
use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};

/// The version with the git revision it was built from.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("AGENTGW_GIT_REVISION"),
    ")"
);

/// SIP agent-login gateway: agents dial in, key their agent number and passcode, and are
/// logged on.
#[derive(Debug, Parser)]
#[command(name = "agentgw", version = VERSION, about)]
struct Cli {
    /// Log format: "text" or "json" (one JSON object per line, for log shippers); default:
    /// [log] format.
    #[arg(long, global = true, value_parser = ["text", "json"])]
    log_format: Option<String>,
    /// The TOML config file (every key optional; see systemd/agentgw.toml).
    #[arg(long, global = true, env = "AGENTGW_CONFIG")]
    config: Option<PathBuf>,
    /// The store, overriding [store] url: sqlite://PATH.
    #[arg(long, global = true, env = "AGENTGW_DB")]
    db: Option<String>,
    /// The tenant agent and session commands work in (a [[tenant]] name of the config).
    #[arg(long, global = true, default_value = "default")]
    tenant: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        /// Add the demo agents 1001/1234, 1002/2345 and 1003/3456 to the store if missing.
        #[arg(long)]
        demo: bool,
    },
    /// Manage agents.
    #[command(subcommand)]
    Agent(AgentCommand),
    /// See and end sessions (logged-on agents).
    #[command(subcommand)]
    Session(SessionCommand),
    /// Manage phone accounts: what callers outside [sip] trusted_networks authenticate with
    /// (SIP Digest); the account is the station they log agents on at.
    #[command(subcommand)]
    Phone(PhoneCommand),
    /// Check configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Show the audit log: every attempt, login, logout (with reason), lockout and change.
    Audit {
        /// Only this agent's entries.
        #[arg(long)]
        agent: Option<String>,
        /// How many of the latest entries (at most 1000).
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Keep printing new entries as they are written (by the gateway or any other
        /// process using the store) until interrupted.
        #[arg(long, short)]
        follow: bool,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Validate a config file and print the effective configuration (every default filled
    /// in); exit 1 with FILE: KEY: reason on error.
    Check {
        /// The file (default: --config).
        file: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum AgentCommand {
    /// Add an agent.
    Add {
        /// The agent number keyed on the phone (1-16 digits).
        number: String,
        /// Display name.
        #[arg(long, default_value = "")]
        name: String,
        #[command(flatten)]
        passcode: PasscodeArg,
        /// A station the agent may log on at ("Logon Stations"), `*` matching anything:
        /// --station '20*@pbx.example'. Repeat for more; none: any station.
        #[arg(long = "station", value_name = "PATTERN")]
        stations: Vec<String>,
        /// A network the agent may log on from: --network 10.0.0.0/8. Repeat for more; none: any.
        #[arg(long = "network", value_name = "CIDR")]
        networks: Vec<Network>,
        /// The agent must choose a new passcode at the first login (also set for every new
        /// agent by [login] new_agents_must_change = true).
        #[arg(long)]
        must_change: bool,
        /// The extension the agent logs on at when pressing # at the extension prompt
        /// ([login] station = "prompt").
        #[arg(long)]
        extension: Option<String>,
        /// The agent's prompt language (a directory under [prompts] dir); default: the tenant's.
        #[arg(long)]
        language: Option<String>,
    },
    /// List agents (never their passcodes).
    List,
    /// Lift the lock of an agent locked after too many wrong passcodes.
    Unlock { number: String },
    /// Remove an agent (and its session, if logged on).
    Remove { number: String },
    /// Create or update agents from a file, all or nothing: CSV with a header row (number,
    /// name, passcode, enabled, stations, networks, default_extension, language, must_change;
    /// lists separated by ; or spaces) or a JSON array of objects with those names. A new agent
    /// needs a passcode; an existing one keeps what the file leaves out.
    Import { file: PathBuf },
    /// Set an agent's passcode.
    Passcode {
        number: String,
        #[command(flatten)]
        passcode: PasscodeArg,
        /// The agent must choose a new passcode at the next login.
        #[arg(long)]
        must_change: bool,
    },
}

#[derive(Debug, Subcommand)]
enum PhoneCommand {
    /// Add a phone account, or set its password, in the [sip] realm.
    Add {
        /// The user name the phone authenticates as (letters, digits, -_.+).
        username: String,
        /// Read the password (12 to 128 characters) from standard input.
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// List phone accounts (never their secrets).
    List,
    /// Remove a phone account.
    Remove { username: String },
}

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
struct PasscodeArg {
    /// Read the passcode from standard input (keeps it out of shell history and `ps`).
    #[arg(long)]
    passcode_stdin: bool,
    /// The passcode (4-16 digits). Prefer --passcode-stdin.
    #[arg(long)]
    passcode: Option<String>,
}

impl PasscodeArg {
    fn read(&self) -> Result<Passcode> {
        if let Some(p) = &self.passcode {
            return Ok(Passcode(p.clone()));
        }
        let mut s = String::new();
        std::io::stdin()
            .take(1024)
            .read_to_string(&mut s)
            .context("reading the passcode from standard input")?;
        Ok(Passcode(s.trim().to_string()))
    }
}

#[derive(Debug, Subcommand)]
enum SessionCommand {
    /// List logged-on agents and their stations.
    List,
    /// Log an agent out.
    Logout { number: String },
}

fn load_config(cli: &Cli) -> Result<Config> {
    let mut config = match &cli.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if let Some(db) = &cli.db {
        if !db.starts_with("sqlite:") && !agentgw::store::is_postgres_url(db) {
            bail!(
                "--db {}: must start with sqlite:// (e.g. sqlite://agentgw.db) or postgres://",
                agentgw::store::mask_password(db)
            );
        }
        config.store.url = db.clone();
    }
    if agentgw::store::is_postgres_url(&config.store.url) && config.store.pepper_file.is_none() {
        bail!(
            "a PostgreSQL store needs [store] pepper_file (in --config FILE): every node hashes \
             passcodes with the same pepper"
        );
    }
    Ok(config)
}

fn init_logging(filter: &str, json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter));
    // Plain text unless on a terminal: the journal and fail2ban read these lines.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        fmt.json().init();
    } else {
        fmt.with_ansi(ansi).init();
    }
}

/// mimalloc instead of glibc's malloc: the SIP stack and the call tasks allocate on every
/// message, and with mimalloc the async thread spends ~9% less CPU per login, and memory freed
/// after a busy hour goes back to the system (BENCHMARKS.md). Built without
/// transparent huge pages (`no_thp`), which otherwise made an idle gateway 25 MB bigger.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Config(ConfigCommand::Check { file }) => {
            config_check(file.as_ref().or(cli.config.as_ref()))
        }
        // The file is read once, before the runtime, whose size it sets (`[sip] threads`).
        _ => load_config(&cli).and_then(|config| {
            let mut runtime = tokio::runtime::Builder::new_multi_thread();
            runtime.enable_all();
            if let Command::Serve { .. } = cli.command {
                runtime.worker_threads(config.sip.runtime_threads());
            }
            let runtime = runtime
                .build()
                .map_err(|e| anyhow!("cannot start the runtime: {e}"))?;
            runtime.block_on(run(cli, config))
        }),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // The message is for the administrator: no backtrace.
            eprintln!("Error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli, config: Config) -> Result<()> {
    if cli.tenant != agentgw::store::DEFAULT_TENANT
        && !config.tenant.iter().any(|t| t.name == cli.tenant)
    {
        bail!(
            "--tenant {}: no [[tenant]] of that name in the config",
            cli.tenant
        );
    }
    match &cli.command {
        Command::Serve { demo } => {
            let json = match cli.log_format.as_deref() {
                Some(f) => f == "json",
                None => config.log.format == agentgw::config::LogFormat::Json,
            };
            init_logging(&config.log.filter, json);
            serve(&config, cli.config.as_ref(), *demo).await
        }
        Command::Config(_) => Ok(()),
        Command::Agent(cmd) => agent(&config, &cli.tenant, cmd).await,
        Command::Session(cmd) => session(&config, &cli.tenant, cmd).await,
        Command::Phone(cmd) => phone(&config, cmd).await,
        Command::Audit {
            agent,
            limit,
            follow,
        } => {
            let store = open_store_to_read(&config).await?.for_tenant(&cli.tenant);
            println!(
                "{:<24} {:<8} {:<16} {:<28} {:<20} REASON",
                "AT", "AGENT", "EVENT", "STATION", "SOURCE"
            );
            let print = |e: agentgw::store::AuditRecord| {
                println!(
                    "{:<24} {:<8} {:<16} {:<28} {:<20} {}",
                    e.at,
                    e.agent.unwrap_or_default(),
                    e.event,
                    e.station.unwrap_or_default(),
                    e.source.unwrap_or_default(),
                    e.reason.unwrap_or_default()
                );
            };
            let mut last = store.last_audit_id().await?;
            for e in store
                .audit_log(agent.as_deref(), *limit)
                .await?
                .into_iter()
                .rev()
            {
                last = last.max(e.id);
                print(e);
            }
            if *follow {
                use std::io::Write;
                let _ = std::io::stdout().flush();
                loop {
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => break,
                        _ = tokio::time::sleep(std::time::Duration::from_millis(250)) => {}
                    }
                    for e in store.audit_after(last, 1000).await? {
                        last = e.id;
                        let mine =
                            e.tenant == store.tenant() && (agent.is_none() || e.agent == *agent);
                        if mine {
                            print(e);
                        }
                    }
                    let _ = std::io::stdout().flush();
                }
            }
            Ok(())
        }
    }
}

fn config_check(file: Option<&PathBuf>) -> Result<()> {
    let config = match file {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    println!("{}", config.effective());
    println!(
        "# {}: valid",
        file.map_or("(defaults)".to_string(), |f| f.display().to_string())
    );
    Ok(())
}

/// Opens an existing store for a command that only reads: nothing is created (no database,
/// no pepper); a store that is not there is an error saying how to name one.
async fn open_store_to_read(config: &Config) -> Result<Store> {
    if let Some(path) = sqlite_path(config).filter(|p| !p.exists()) {
        bail!(
            "no store at {}: name one with --db sqlite://PATH or --config FILE ([store] url); \
             `agentgw serve` or `agentgw agent add` creates it",
            path.display()
        );
    }
    let settings = agentgw::store::HashSettings {
        memory_kib: config.store.hash_memory_kib,
        iterations: config.store.hash_iterations,
        pepper: None,
    };
    let store = Store::open_with(&config.store.url, &config.gateway.node_id(), &settings).await?;
    let path = pepper_path(config);
    if !path.exists() {
        let (peppered, _) = store.peppered_hashes().await?;
        if peppered > 0 {
            return Err(lost_pepper(&path, peppered));
        }
    }
    Ok(store)
}

/// Where the pepper is: `[store] pepper_file`, else `agentgw.pepper` next to the database.
fn pepper_path(config: &Config) -> PathBuf {
    config
        .store
        .pepper_file
        .clone()
        .unwrap_or_else(|| db_dir(config).join("agentgw.pepper"))
}

/// The error of a pepper file gone while passcodes hashed with it are in the store.
fn lost_pepper(path: &Path, peppered: usize) -> anyhow::Error {
    anyhow::anyhow!(
        "{}: the pepper file is missing, but {peppered} agents' passcodes were hashed with \
         one: restore the file (or set [store] pepper_file to where it is); without it \
         those agents cannot log in",
        path.display()
    )
}

/// The file of a SQLite store URL.
fn sqlite_path(config: &Config) -> Option<PathBuf> {
    let url = &config.store.url;
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .filter(|p| !p.starts_with(":memory:"))?;
    let path = path.split('?').next().unwrap_or(path);
    Some(PathBuf::from(path))
}

/// Opens the store with the configured hashing and the pepper: read from `[store]
/// pepper_file`, else from `agentgw.pepper` next to the database, generated there (mode 0600)
/// on first use, unless passcodes already hashed with a pepper show it was lost.
async fn open_store(config: &Config) -> Result<Store> {
    let path = pepper_path(config);
    let existing = match std::fs::read(&path) {
        Ok(p) => {
            let p: Vec<u8> = p.trim_ascii().to_vec();
            if p.len() < 16 {
                bail!("{}: a pepper must be at least 16 bytes", path.display());
            }
            Some(p)
        }
        Err(e)
            if e.kind() == std::io::ErrorKind::NotFound && config.store.pepper_file.is_none() =>
        {
            None
        }
        Err(e) => bail!("{}: cannot read the pepper: {e}", path.display()),
    };
    let created = existing.is_none();
    let pepper =
        existing.unwrap_or_else(|| agentgw::hex::encode(&rand::random::<[u8; 32]>()).into_bytes());
    let settings = agentgw::store::HashSettings {
        memory_kib: config.store.hash_memory_kib,
        iterations: config.store.hash_iterations,
        pepper: Some(pepper.clone()),
    };
    let store = Store::open_with(&config.store.url, &config.gateway.node_id(), &settings).await?;
    let (peppered, other) = store.peppered_hashes().await?;
    if created {
        if peppered > 0 {
            return Err(lost_pepper(&path, peppered));
        }
        write_secret(&path, &pepper)
            .with_context(|| format!("cannot write the pepper to {}", path.display()))?;
        eprintln!(
            "passcode pepper generated in {} (mode 0600): back it up apart from the database",
            path.display()
        );
    } else if other > 0 {
        eprintln!(
            "warning: {other} agents' passcodes were hashed with another pepper than {}; they cannot log in until their passcodes are reset",
            path.display()
        );
    }
    Ok(store)
}

/// Writes a new file readable by its owner only.
fn write_secret(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)
}

async fn serve(config: &Config, config_path: Option<&PathBuf>, demo: bool) -> Result<()> {
    let store = open_store(config).await?;
    if demo {
        for (number, name, pass) in [
            ("1001", "Demo Agent One", "1234"),
            ("1002", "Demo Agent Two", "2345"),
            ("1003", "Demo Agent Three", "3456"),
        ] {
            if !store.agent_exists(number).await? {
                store
                    .add_agent(number, name, &Passcode(pass.into()))
                    .await?;
            }
        }
        println!(
            "demo agents in {}: 1001 / 1234, 1002 / 2345, 1003 / 3456",
            config.store.url
        );
    }
    let gateway = Gateway::start_with_store(config, store).await?;
    for l in gateway.listening() {
        println!("listening for SIP on {l}");
    }
    if let Some(l) = gateway.listening().first() {
        let ip = if l.addr.ip().is_unspecified() {
            primary_address(l.addr.is_ipv4()).unwrap_or(l.addr.ip())
        } else {
            l.addr.ip()
        };
        let host = match ip {
            std::net::IpAddr::V6(v6) => format!("[{v6}]"),
            ip => ip.to_string(),
        };
        let transport = if l.transport == Transport::Tcp {
            ";transport=tcp"
        } else {
            ""
        };
        println!(
            "call sip:login@{host}:{}{transport} and key your agent number, #, passcode, #",
            l.addr.port()
        );
    }
    println!(
        "agents logged on: agentgw session list{}",
        config_hint(config)
    );
    let state_dir = state_dir(config);
    let (admin, created) = gateway.start_admin(config, &state_dir).await?;
    println!("admin API on http://{admin}/ (Authorization: Bearer TOKEN)");
    if let Some(file) = created {
        println!("admin token generated in {} (mode 0600)", file.display());
    }
    let notifier = std::sync::Arc::new(Notifier::from_env());
    notifier.send("READY=1\nSTATUS=listening, no calls");
    let health = tokio::spawn(health_loop(notifier.clone(), gateway.status()));
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => reload(config_path, &gateway),
        }
    }
    let calls = gateway.active_calls();
    tracing::info!(
        calls,
        drain_secs = config.gateway.drain_secs,
        "draining: new calls get 503"
    );
    notifier.send(&format!(
        "STOPPING=1\nSTATUS=draining, {calls} calls in progress"
    ));
    let drain = gateway.drain(Duration::from_secs(config.gateway.drain_secs));
    let cut = tokio::select! {
        cut = drain => cut,
        _ = term.recv() => stop_at_once(),
        _ = int.recv() => stop_at_once(),
    };
    health.abort();
    tracing::info!(cut, "stopped");
    Ok(())
}

/// SIGHUP (systemctl reload): reads the config file again and applies it to the calls that
/// start from now on; calls in progress keep theirs. A broken file is refused and the running
/// configuration stays. What needs a restart (listen addresses …) is logged as such.
fn reload(path: Option<&PathBuf>, gateway: &Gateway) {
    let Some(path) = path else {
        tracing::info!("SIGHUP: no config file to reload (running on defaults)");
        return;
    };
    let new = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "SIGHUP: the new config is refused; the running one stays");
            return;
        }
    };
    match gateway.reload(&new) {
        Ok(changes) => {
            tracing::info!(file = %path.display(), changed = changes.len(), "SIGHUP: config reloaded for new calls");
            for c in changes {
                match c.applied {
                    true => tracing::info!(key = c.key, "SIGHUP: applied to new calls"),
                    false => tracing::warn!(
                        key = c.key,
                        "SIGHUP: this change needs a restart; the running value stays"
                    ),
                }
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "SIGHUP: the new config is refused; the running one stays")
        }
    }
}

fn stop_at_once() -> usize {
    tracing::warn!("second signal: stopping at once");
    std::process::exit(1)
}

/// Where state (the generated admin token) is kept: systemd's `$STATE_DIRECTORY`, else the
/// directory of the SQLite file (of the pepper file with PostgreSQL), else the current
/// directory.
fn state_dir(config: &Config) -> PathBuf {
    if let Some(d) = std::env::var_os("STATE_DIRECTORY") {
        return PathBuf::from(d);
    }
    db_dir(config)
}

/// The directory of the SQLite file (the current directory for a bare file name); for a
/// PostgreSQL store, that of the pepper file it needs.
fn db_dir(config: &Config) -> PathBuf {
    let path = match sqlite_path(config) {
        Some(path) => path,
        None => match &config.store.pepper_file {
            Some(pepper) => pepper.clone(),
            None => return PathBuf::from("."),
        },
    };
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), PathBuf::from)
}

/// Tells systemd the gateway is alive (WATCHDOG=1, sent from a task of the runtime that runs
/// the calls: a stalled runtime stops the pings) and what it is doing (STATUS=).
async fn health_loop(notifier: std::sync::Arc<Notifier>, status: GatewayStatus) {
    let watchdog = Notifier::watchdog_interval();
    let every = watchdog
        .unwrap_or(Duration::from_secs(10))
        .min(Duration::from_secs(10));
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let (calls, agents) = status.snapshot().await;
        let mut msg = format!("STATUS={calls} calls in progress, {agents} agents logged on");
        if watchdog.is_some() {
            msg.push_str("\nWATCHDOG=1");
        }
        notifier.send(&msg);
    }
}

/// The address this host uses for outside traffic (no packet is sent: a UDP connect only
/// picks the route), to print a dialable URI when listening on every address.
fn primary_address(v4: bool) -> Option<std::net::IpAddr> {
    let (bind, probe) = if v4 {
        ("0.0.0.0:0", "192.0.2.1:9")
    } else {
        ("[::]:0", "[2001:db8::1]:9")
    };
    let s = std::net::UdpSocket::bind(bind).ok()?;
    s.connect(probe).ok()?;
    Some(s.local_addr().ok()?.ip())
}

fn config_hint(config: &Config) -> String {
    if config.store.url == Config::default().store.url {
        String::new()
    } else {
        format!(" --db {}", config.store.url)
    }
}

async fn agent(config: &Config, tenant: &str, cmd: &AgentCommand) -> Result<()> {
    let store = match cmd {
        AgentCommand::List => open_store_to_read(config).await?,
        _ => open_store(config).await?,
    }
    .for_tenant(tenant);
    match cmd {
        AgentCommand::Add {
            number,
            name,
            passcode,
            stations,
            networks,
            must_change,
            extension,
            language,
        } => {
            let changes = agentgw::store::AgentChanges {
                name: Some(name.clone()),
                stations: Some(stations.clone()),
                networks: Some(networks.clone()),
                must_change: Some(*must_change || config.login.new_agents_must_change),
                default_extension: extension.clone(),
                language: language.clone(),
                ..Default::default()
            };
            store
                .create_agent(number, &passcode.read()?, &changes)
                .await?;
            println!("agent {number} added");
        }
        AgentCommand::Unlock { number } => {
            if store.unlock(number).await? {
                println!("agent {number} unlocked");
            } else {
                println!("agent {number} was not locked");
            }
        }
        AgentCommand::List => {
            let agents = store.list_agents().await?;
            println!(
                "{:<16} {:<24} {:<8} {:<10} {:<7} RESTRICTIONS",
                "AGENT", "NAME", "ENABLED", "LOGGED ON", "LOCKED"
            );
            let yes = |b: bool| if b { "yes" } else { "no" };
            for a in agents {
                let mut restrictions = Vec::new();
                if !a.stations.is_empty() {
                    restrictions.push(format!("stations {}", a.stations.join(",")));
                }
                if !a.networks.is_empty() {
                    restrictions.push(format!("networks {}", a.networks.join(",")));
                }
                println!(
                    "{:<16} {:<24} {:<8} {:<10} {:<7} {}",
                    a.number,
                    a.name,
                    yes(a.enabled),
                    yes(a.logged_on),
                    yes(a.locked),
                    restrictions.join("; ")
                );
            }
        }
        AgentCommand::Import { file } => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let json = text.trim_start().starts_with('[');
            let (mut rows, errors) = agentgw::store::parse_import(&text, json)
                .map_err(|e| anyhow!("{}: {}", file.display(), import_error(&e)))?;
            if config.login.new_agents_must_change {
                for r in &mut rows {
                    if r.passcode.is_some() && r.changes.must_change.is_none() {
                        r.changes.must_change = Some(true);
                    }
                }
            }
            let done = store
                .import_agents(&rows, errors)
                .await
                .map_err(|e| anyhow!("{}: {}", file.display(), import_error(&e)))?;
            println!(
                "{}: {} agents created, {} updated",
                file.display(),
                done.created,
                done.updated
            );
        }
        AgentCommand::Remove { number } => {
            store.remove_agent(number).await?;
            println!("agent {number} removed");
        }
        AgentCommand::Passcode {
            number,
            passcode,
            must_change,
        } => {
            store
                .reset_passcode(number, &passcode.read()?, *must_change)
                .await?;
            println!("passcode of agent {number} changed");
        }
    }
    Ok(())
}

/// An import error, one line per problem.
fn import_error(e: &agentgw::store::StoreError) -> String {
    match e {
        agentgw::store::StoreError::Import(lines) => {
            format!("nothing was imported:\n  {}", lines.join("\n  "))
        }
        e => e.to_string(),
    }
}

async fn session(config: &Config, tenant: &str, cmd: &SessionCommand) -> Result<()> {
    let store = match cmd {
        SessionCommand::List => open_store_to_read(config).await?,
        SessionCommand::Logout { .. } => open_store(config).await?,
    }
    .for_tenant(tenant);
    match cmd {
        SessionCommand::List => {
            let sessions = store.list_sessions().await?;
            println!(
                "{:<16} {:<32} {:<10} {:<21} SOURCE",
                "AGENT", "STATION", "STATUS", "SINCE"
            );
            for s in sessions {
                println!(
                    "{:<16} {:<32} {:<10} {:<21} {}",
                    s.agent, s.station, s.status, s.logged_in_at, s.source
                );
            }
        }
        SessionCommand::Logout { number } => {
            if store
                .logout(number, agentgw::store::REASON_ADMINISTRATOR)
                .await?
            {
                println!("agent {number} logged out");
            } else {
                bail!("agent {number} is not logged on");
            }
        }
    }
    Ok(())
}

async fn phone(config: &Config, cmd: &PhoneCommand) -> Result<()> {
    match cmd {
        PhoneCommand::Add { username, .. } => {
            let mut password = String::new();
            std::io::stdin()
                .take(1024)
                .read_to_string(&mut password)
                .context("reading the password from standard input")?;
            let password = Passcode(password.trim_end_matches(['\r', '\n']).to_string());
            let store = open_store(config).await?;
            let realm = &config.sip.realm;
            if store.add_phone(username, realm, &password).await? {
                println!("phone {username} added (realm {realm})");
            } else {
                println!("phone {username}: password set (realm {realm})");
            }
        }
        PhoneCommand::List => {
            let store = open_store_to_read(config).await?;
            println!("{:<24} {:<24} CREATED", "USER", "REALM");
            for p in store.phones().await? {
                println!("{:<24} {:<24} {}", p.username, p.realm, p.created);
            }
        }
        PhoneCommand::Remove { username } => {
            if open_store(config).await?.remove_phone(username).await? {
                println!("phone {username} removed");
            } else {
                bail!("no phone account {username}");
            }
        }
    }
    Ok(())
}
