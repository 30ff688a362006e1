//! The test phone: a small SIP UAC over real UDP/TCP sockets on loopback that places calls to a
//! real gateway, sends RFC 4733 keys, records the RTP it receives and tells which prompts it
//! heard by matching payloads against the prompt catalog (no transcoding, so frames match
//! exactly). It also starts gateways on free ports.

#![allow(dead_code)]

use agentgw::login::Passcode;
use agentgw::media::dtmf::{rfc4733, Digit};
use agentgw::media::prompts::{Catalog, Codec, Frame, PromptId, FRAME_SAMPLES};
use agentgw::media::rtp::{self, RtpWriter};
use agentgw::media::srtp::{self, MasterKey, Suite};
use agentgw::sip::{ListenAddr, Transport};
use agentgw::store::Store;
use agentgw::{Config, Gateway};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio::time::{timeout, Instant};

/// A gateway started for one test, on free loopback ports, with the demo agents.
pub struct TestGateway {
    pub gateway: Gateway,
    pub udp: SocketAddr,
    pub tcp: SocketAddr,
    pub store: Store,
    pub config: Config,
    _dir: tempfile::TempDir,
}

pub const DEMO_AGENTS: [(&str, &str); 3] = [("1001", "1234"), ("1002", "2345"), ("1003", "3456")];

/// A gateway on loopback with a TLS listener too, its certificate for 127.0.0.1 made in `dir`:
/// the gateway, the TLS listener's address and the CA's certificate (PEM).
pub async fn start_tls_gateway(
    dir: &std::path::Path,
    tweak: impl FnOnce(&mut Config),
) -> (TestGateway, SocketAddr, Vec<u8>) {
    let (cert, key, ca) = certificate(dir, "gateway", "127.0.0.1");
    let tls = SocketAddr::new([127, 0, 0, 1].into(), free_port([127, 0, 0, 1].into()));
    let gw = start_gateway_with("127.0.0.1", |c| {
        c.sip.listen.push(ListenAddr {
            transport: Transport::Tls,
            addr: tls,
        });
        c.sip.tls_certificate = Some(cert);
        c.sip.tls_private_key = Some(key);
        tweak(c);
    })
    .await;
    (gw, tls, ca)
}

/// A port free for both UDP and TCP on `ip`.
fn free_port(ip: IpAddr) -> u16 {
    for _ in 0..50 {
        let udp = std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).unwrap();
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind(SocketAddr::new(ip, port)).is_ok() {
            return port;
        }
    }
    panic!("no free port");
}

pub async fn start_gateway_with(ip: &str, tweak: impl FnOnce(&mut Config)) -> TestGateway {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                "info,rsipstack=warn,rsipstack::transport::transport_layer=error,sqlx=warn".into()
            }),
        )
        .with_test_writer()
        .try_init();
    let ip: IpAddr = ip.parse().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.store.url = format!("sqlite://{}", dir.path().join("agentgw.db").display());
    let port = free_port(ip);
    config.sip.listen = vec![
        ListenAddr {
            transport: Transport::Udp,
            addr: SocketAddr::new(ip, port),
        },
        ListenAddr {
            transport: Transport::Tcp,
            addr: SocketAddr::new(ip, port),
        },
    ];
    config.gateway.node_id = Some("test-node".into());
    tweak(&mut config);
    let store = Store::open(&config.store.url, &config.gateway.node_id())
        .await
        .unwrap();
    for (n, p) in DEMO_AGENTS {
        // A second node on a shared store finds them there.
        match store.add_agent(n, "Demo", &Passcode(p.into())).await {
            Ok(()) | Err(agentgw::store::StoreError::AgentExists(_)) => {}
            Err(e) => panic!("{e}"),
        }
    }
    let gateway = Gateway::start_with_store(&config, store.clone())
        .await
        .unwrap();
    TestGateway {
        gateway,
        udp: SocketAddr::new(ip, port),
        tcp: SocketAddr::new(ip, port),
        store,
        config,
        _dir: dir,
    }
}

impl TestGateway {
    /// Starts the admin listener on a free loopback port; its address and token.
    pub async fn start_admin(&self) -> (SocketAddr, String) {
        let mut config = self.config.clone();
        config.admin.listen = "127.0.0.1:0".parse().unwrap();
        let (addr, created) = self
            .gateway
            .start_admin(&config, self._dir.path())
            .await
            .unwrap();
        let file = created.unwrap_or_else(|| self._dir.path().join("admin-token"));
        let token = std::fs::read_to_string(file).unwrap();
        (addr, token.trim().to_string())
    }

    /// The stations of the sessions, sorted.
    pub async fn stations(&self) -> Vec<String> {
        self.sorted(|s| s.station).await
    }

    /// The agents logged on, sorted.
    pub async fn agents(&self) -> Vec<String> {
        self.sorted(|s| s.agent).await
    }

    async fn sorted(&self, field: impl Fn(agentgw::store::Session) -> String) -> Vec<String> {
        let mut v: Vec<String> = self
            .store
            .list_sessions()
            .await
            .unwrap()
            .into_iter()
            .map(field)
            .collect();
        v.sort();
        v
    }

    /// Waits until no call and no dialog is left; false if some stay (a leak).
    pub async fn settles(&self) -> bool {
        for _ in 0..100 {
            if self.gateway.active_calls() == 0 && self.gateway.open_dialogs() == 0 {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }
}

pub async fn start_gateway() -> TestGateway {
    start_gateway_with("127.0.0.1", |_| {}).await
}

/// One call keying `keys` (an agent number and a wrong passcode) three times, 300 ms apart,
/// that the gateway ends as `incorrect` (with `max_attempts = 3`).
pub async fn refused_three_times(gw: &TestGateway, keys: &str) {
    let mut p = Phone::new(gw.udp, PhoneOptions::default()).await;
    p.call().await;
    for _ in 0..3 {
        p.press(keys).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(p.wait_for_bye(15).await.as_deref(), Some("incorrect"));
}

/// A TLS connection over `stream` to the gateway at `gateway`, its certificate checked
/// against `opts.tls_ca` for the gateway's IP address.
async fn tls_connect(
    stream: TcpStream,
    gateway: SocketAddr,
    opts: &PhoneOptions,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let ca = opts.tls_ca.as_deref().expect("a TLS phone needs tls_ca");
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(ca) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions = match opts.tls_version {
        Some(v) => vec![v],
        None => rustls::DEFAULT_VERSIONS.to_vec(),
    };
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)
        .unwrap()
        .with_root_certificates(roots);
    let config = match &opts.tls_client {
        None => config.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = rustls::pki_types::CertificateDer::pem_slice_iter(cert)
                .map(Result::unwrap)
                .collect();
            let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key).unwrap();
            config.with_client_auth_cert(chain, key).unwrap()
        }
    };
    let name = rustls::pki_types::ServerName::IpAddress(gateway.ip().into());
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, stream)
        .await
        .expect("TLS handshake with the gateway")
}

/// A certificate for `ip` signed by a new CA, made by scripts/test-certificate.sh (openssl) in
/// `dir` under `name`: the paths of the certificate and key, and the CA's certificate (PEM).
pub fn certificate(dir: &std::path::Path, name: &str, ip: &str) -> (PathBuf, PathBuf, Vec<u8>) {
    // The repository's script, from this crate or the load generator's beside it.
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|d| d.join("scripts/test-certificate.sh"))
        .find(|f| f.exists())
        .expect("scripts/test-certificate.sh in the repository");
    let out = std::process::Command::new(&script)
        .args([dir.as_os_str(), name.as_ref(), ip.as_ref()])
        .output()
        .expect("scripts/test-certificate.sh runs");
    assert!(
        out.status.success(),
        "{}: {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
        std::fs::read(dir.join(format!("{name}-ca.pem"))).unwrap(),
    )
}

/// A SIP message as the phone reads it: the load generator's parser.
pub use agentgw_load::sip::Msg as SipMsg;

/// How the phone behaves.
#[derive(Debug, Clone)]
pub struct PhoneOptions {
    pub user: String,
    /// The host of the From URI.
    pub from_host: String,
    pub transport: Transport,
    /// Codecs offered, in order.
    pub codecs: Vec<Codec>,
    /// telephone-event payload type offered (None: none offered).
    pub telephone_event: Option<u8>,
    /// Send the INVITE without SDP and answer in the ACK.
    pub late_offer: bool,
    /// Extra header lines for the INVITE ("Name: value\r\n" each).
    pub invite_headers: String,
    /// The user dialed (the Request-URI user): "login", "logout" …
    pub dialed: String,
    /// Offer comfort noise (CN/8000, payload type 13).
    pub comfort_noise: bool,
    /// Leave the gateway's requests (its BYE) unanswered, as a phone that went away does
    /// (UDP only).
    pub deaf: bool,
    /// SRTP: the suite offered with a key of the phone's, and whether as RTP/SAVP (else
    /// best-effort, in RTP/AVP).
    pub srtp: Option<(Suite, bool)>,
    /// Over TLS: call a `sips:` Request-URI.
    pub sips: bool,
    /// Over TLS: the CA certificate (PEM) the gateway's certificate is checked against.
    pub tls_ca: Option<Vec<u8>>,
    /// Over TLS: the phone's own certificate and key (PEM), for mutual TLS.
    pub tls_client: Option<(Vec<u8>, Vec<u8>)>,
    /// Over TLS: offer only this version (else TLS 1.3 and 1.2).
    pub tls_version: Option<&'static rustls::SupportedProtocolVersion>,
    /// A phone account to answer a 401 with: user, password, and the algorithm to take
    /// from the challenges ("SHA-256" or "MD5").
    pub digest: Option<(String, String, &'static str)>,
}

impl Default for PhoneOptions {
    fn default() -> Self {
        PhoneOptions {
            user: format!("phone{}", rand::random::<u32>() % 100000),
            from_host: "test.example".into(),
            transport: Transport::Udp,
            codecs: vec![Codec::Pcmu],
            telephone_event: Some(101),
            late_offer: false,
            invite_headers: String::new(),
            dialed: "login".into(),
            comfort_noise: false,
            deaf: false,
            srtp: None,
            sips: false,
            tls_ca: None,
            tls_client: None,
            tls_version: None,
            digest: None,
        }
    }
}

/// The writing half of a TCP or TLS connection.
type StreamWriter = Arc<tokio::sync::Mutex<Box<dyn tokio::io::AsyncWrite + Send + Unpin>>>;

enum Signalling {
    Udp(Arc<UdpSocket>),
    Stream(StreamWriter),
}

/// One received RTP packet.
#[derive(Debug, Clone)]
pub struct Received {
    pub at: Instant,
    pub payload_type: u8,
    pub seq: u16,
    pub ts: u32,
    pub ssrc: u32,
    pub marker: bool,
    pub payload: Vec<u8>,
}

/// A prompt heard: which, and how many of its frames arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heard {
    pub prompt: PromptId,
    pub frames: usize,
    /// Whether (nearly) all of the prompt's distinct frames arrived.
    pub complete: bool,
}

pub struct Phone {
    pub opts: PhoneOptions,
    gateway: SocketAddr,
    local_sip: SocketAddr,
    sig: Signalling,
    responses: mpsc::UnboundedReceiver<SipMsg>,
    /// Requests the gateway sent us (BYE), already answered 200.
    requests: Arc<Mutex<Vec<SipMsg>>>,
    rtp: Arc<UdpSocket>,
    pub received: Arc<Mutex<Vec<Received>>>,
    /// SRTP: the phone's key, what protects its packets, and what unprotects the gateway's
    /// (packets that fail are counted in `srtp_refused`).
    srtp_key: Option<MasterKey>,
    srtp_tx: Option<srtp::Sender>,
    srtp_rx: Arc<Mutex<Option<srtp::Receiver>>>,
    pub srtp_refused: Arc<Mutex<u64>>,
    remote_rtp: Option<SocketAddr>,
    pub codec: Codec,
    pub te_pt: Option<u8>,
    writer: RtpWriter,
    call_id: String,
    from_tag: String,
    to_tag: Option<String>,
    /// Through a proxy that record-routes: the route set (RFC 3261 §12.1.2: the 200's
    /// Record-Route, reversed) and the remote target (its Contact) of in-dialog requests.
    route_set: Vec<String>,
    remote_target: Option<String>,
    cseq: u32,
    branch: String,
    pub invite_response: Option<SipMsg>,
    pub answer_sdp: Option<String>,
    /// The INVITE's CSeq: 1, one more for each answer to a challenge.
    invite_cseq: u32,
    /// The Authorization header line last sent with the INVITE, if any.
    pub authorization: Option<String>,
}

fn rand_token() -> String {
    format!("{:x}", rand::random::<u64>())
}

impl Phone {
    pub async fn new(gateway: SocketAddr, opts: PhoneOptions) -> Phone {
        let ip = gateway.ip();
        let rtp = Arc::new(UdpSocket::bind(SocketAddr::new(ip, 0)).await.unwrap());
        let received = Arc::new(Mutex::new(Vec::new()));
        let srtp_rx: Arc<Mutex<Option<srtp::Receiver>>> = Arc::default();
        let srtp_refused: Arc<Mutex<u64>> = Arc::default();
        {
            let rtp = rtp.clone();
            let received = received.clone();
            let (srtp_rx, srtp_refused) = (srtp_rx.clone(), srtp_refused.clone());
            tokio::spawn(async move {
                let mut buf = [0u8; 2048];
                while let Ok((mut n, _)) = rtp.recv_from(&mut buf).await {
                    if let Some(rx) = srtp_rx.lock().unwrap().as_mut() {
                        match rx.unprotect(&mut buf[..n]) {
                            Ok(len) => n = len,
                            Err(_) => {
                                *srtp_refused.lock().unwrap() += 1;
                                continue;
                            }
                        }
                    }
                    if let Some((h, p)) = rtp::parse(&buf[..n]) {
                        received.lock().unwrap().push(Received {
                            at: Instant::now(),
                            payload_type: h.payload_type,
                            seq: h.sequence,
                            ts: h.timestamp,
                            ssrc: h.ssrc,
                            marker: h.marker,
                            payload: p.to_vec(),
                        });
                    }
                }
            });
        }
        let (resp_tx, responses) = mpsc::unbounded_channel();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (sig, local_sip) = match opts.transport {
            Transport::Udp => {
                let s = Arc::new(UdpSocket::bind(SocketAddr::new(ip, 0)).await.unwrap());
                let local = s.local_addr().unwrap();
                let rs = s.clone();
                let reqs = requests.clone();
                let deaf = opts.deaf;
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 65536];
                    while let Ok((n, from)) = rs.recv_from(&mut buf).await {
                        if let Some(m) = SipMsg::parse(&buf[..n]) {
                            if m.method().is_some() {
                                if !deaf {
                                    let reply = SipMsg::ok(&m);
                                    rs.send_to(reply.as_bytes(), from).await.ok();
                                }
                                reqs.lock().unwrap().push(m);
                            } else {
                                resp_tx.send(m).ok();
                            }
                        }
                    }
                });
                (Signalling::Udp(s), local)
            }
            Transport::Tcp | Transport::Tls => {
                let stream = TcpStream::connect(gateway).await.unwrap();
                let local = stream.local_addr().unwrap();
                let (mut rd, wr): (Box<dyn tokio::io::AsyncRead + Send + Unpin>, _) =
                    match opts.transport {
                        Transport::Tls => {
                            let tls = tls_connect(stream, gateway, &opts).await;
                            let (rd, wr) = tokio::io::split(tls);
                            (
                                Box::new(rd),
                                Box::new(wr) as Box<dyn tokio::io::AsyncWrite + Send + Unpin>,
                            )
                        }
                        _ => {
                            let (rd, wr) = stream.into_split();
                            (
                                Box::new(rd),
                                Box::new(wr) as Box<dyn tokio::io::AsyncWrite + Send + Unpin>,
                            )
                        }
                    };
                let wr: StreamWriter = Arc::new(tokio::sync::Mutex::new(wr));
                let ww = wr.clone();
                let reqs = requests.clone();
                tokio::spawn(async move {
                    let mut buf: Vec<u8> = Vec::new();
                    let mut chunk = [0u8; 8192];
                    loop {
                        while let Some((m, used)) = frame_tcp(&buf) {
                            buf.drain(..used);
                            if m.method().is_some() {
                                let reply = SipMsg::ok(&m);
                                let mut w = ww.lock().await;
                                w.write_all(reply.as_bytes()).await.ok();
                                w.flush().await.ok();
                                reqs.lock().unwrap().push(m);
                            } else {
                                resp_tx.send(m).ok();
                            }
                        }
                        match rd.read(&mut chunk).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                });
                (Signalling::Stream(wr), local)
            }
        };
        Phone {
            srtp_key: opts.srtp.map(|(suite, _)| MasterKey::generate(suite)),
            srtp_tx: None,
            srtp_rx,
            srtp_refused,
            codec: opts.codecs[0],
            te_pt: opts.telephone_event,
            opts,
            gateway,
            local_sip,
            sig,
            responses,
            requests,
            rtp,
            received,
            remote_rtp: None,
            writer: RtpWriter::default(),
            call_id: format!("{}@test-phone", rand_token()),
            from_tag: rand_token(),
            to_tag: None,
            route_set: Vec::new(),
            remote_target: None,
            cseq: 1,
            branch: String::new(),
            invite_response: None,
            answer_sdp: None,
            invite_cseq: 1,
            authorization: None,
        }
    }

    fn host(addr: SocketAddr) -> String {
        match addr.ip() {
            IpAddr::V6(v6) => format!("[{v6}]:{}", addr.port()),
            ip => format!("{ip}:{}", addr.port()),
        }
    }

    /// The Request-URI of a new call: `sips:` with `opts.sips`, else `sip:` with the
    /// transport.
    fn request_uri(&self) -> String {
        let gw = Self::host(self.gateway);
        match self.opts.sips {
            true => format!("sips:{}@{gw}", self.opts.dialed),
            false => format!("sip:{}@{gw}{}", self.opts.dialed, self.uri_transport()),
        }
    }

    /// The transport parameter of our URIs.
    fn uri_transport(&self) -> &'static str {
        match self.opts.transport {
            Transport::Udp => "",
            Transport::Tcp => ";transport=tcp",
            Transport::Tls => ";transport=tls",
        }
    }

    fn transport_name(&self) -> &'static str {
        match self.opts.transport {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
        }
    }

    pub fn our_sdp(&self) -> String {
        let addr = self.rtp.local_addr().unwrap();
        let fam = if addr.is_ipv4() { "IP4" } else { "IP6" };
        let mut pts: Vec<u8> = self.opts.codecs.iter().map(|c| c.payload_type()).collect();
        pts.extend(self.opts.telephone_event);
        if self.opts.comfort_noise {
            pts.push(13);
        }
        let profile = match self.opts.srtp {
            Some((_, true)) => "RTP/SAVP",
            _ => "RTP/AVP",
        };
        let mut s = format!(
            "v=0\r\no=phone 1 1 IN {fam} {ip}\r\ns=-\r\nc=IN {fam} {ip}\r\nt=0 0\r\nm=audio {port} {profile} {pts}\r\n",
            ip = addr.ip(),
            port = addr.port(),
            pts = pts.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(" ")
        );
        if let Some(key) = &self.srtp_key {
            s += &format!("a=crypto:1 {} {}\r\n", key.suite.name(), key.to_inline());
        }
        for c in &self.opts.codecs {
            s += &format!("a=rtpmap:{} {}/8000\r\n", c.payload_type(), c.name());
        }
        if let Some(te) = self.opts.telephone_event {
            s += &format!("a=rtpmap:{te} telephone-event/8000\r\na=fmtp:{te} 0-16\r\n");
        }
        if self.opts.comfort_noise {
            s += "a=rtpmap:13 CN/8000\r\n";
        }
        s += "a=ptime:20\r\na=sendrecv\r\n";
        s
    }

    fn request(
        &mut self,
        method: &str,
        cseq: u32,
        extra: &str,
        body: &str,
        new_branch: bool,
    ) -> String {
        if new_branch || self.branch.is_empty() {
            self.branch = format!("z9hG4bK{}", rand_token());
        }
        let to_tag = self
            .to_tag
            .as_ref()
            .map(|t| format!(";tag={t}"))
            .unwrap_or_default();
        let gw = Self::host(self.gateway);
        let me = Self::host(self.local_sip);
        // With a SIPS Request-URI, a SIPS Contact (RFC 3261 §8.1.1.8).
        let (scheme, uri_tp) = match self.opts.sips {
            true => ("sips", ""),
            false => ("sip", self.uri_transport()),
        };
        let ct = if body.is_empty() {
            ""
        } else {
            "Content-Type: application/sdp\r\n"
        };
        // In a record-routed dialog: to the remote target, along the route set.
        let (uri, routes) = match (&self.remote_target, self.to_tag.is_some()) {
            (Some(target), true) => {
                let routes: String = self
                    .route_set
                    .iter()
                    .map(|r| format!("Route: {r}\r\n"))
                    .collect();
                (target.clone(), routes)
            }
            _ => (self.request_uri(), String::new()),
        };
        format!(
            "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/{tp} {me};branch={branch};rport\r\n\
             Max-Forwards: 70\r\n{routes}From: <sip:{user}@{from_host}>;tag={ftag}\r\nTo: <sip:login@{gw}>{to_tag}\r\n\
             Call-ID: {cid}\r\nCSeq: {cseq} {method}\r\nContact: <{scheme}:{user}@{me}{uri_tp}>\r\n{extra}{ct}\
             Content-Length: {len}\r\n\r\n{body}",
            tp = self.transport_name(),
            branch = self.branch,
            user = self.opts.user,
            from_host = self.opts.from_host,
            ftag = self.from_tag,
            cid = self.call_id,
            len = body.len(),
        )
    }

    /// The text of a request in this call's dialog (next CSeq, a new branch), not sent:
    /// for tests that change it before `send_raw`. `content_type` with a body.
    pub fn in_dialog(&mut self, method: &str, content_type: &str, body: &str) -> String {
        self.cseq += 1;
        let req = self.request(method, self.cseq, "", "", true);
        if body.is_empty() {
            return req;
        }
        req.replace(
            "Content-Length: 0\r\n\r\n",
            &format!(
                "Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            ),
        )
    }

    pub async fn send_raw(&self, data: &[u8]) {
        match &self.sig {
            Signalling::Udp(s) => {
                s.send_to(data, self.gateway).await.unwrap();
            }
            Signalling::Stream(w) => {
                let mut w = w.lock().await;
                w.write_all(data).await.unwrap();
                w.flush().await.unwrap();
            }
        }
    }

    /// Waits for the next response to `method`, up to `secs`.
    pub async fn response(&mut self, method: &str, secs: u64) -> Option<SipMsg> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let m = timeout(
                deadline.saturating_duration_since(Instant::now()),
                self.responses.recv(),
            )
            .await
            .ok()??;
            if m.cseq_method().eq_ignore_ascii_case(method) {
                return Some(m);
            }
        }
    }

    /// Waits for the final response to `method`.
    pub async fn final_response(&mut self, method: &str, secs: u64) -> Option<SipMsg> {
        loop {
            let m = self.response(method, secs).await?;
            if m.status().unwrap_or(0) >= 200 {
                return Some(m);
            }
        }
    }

    /// The text of this call's INVITE with a new branch, not sent: for tests that send it
    /// (and retransmit it) with `send_raw`.
    pub fn invite_text(&mut self) -> String {
        let body = if self.opts.late_offer {
            String::new()
        } else {
            self.our_sdp()
        };
        let extra = self.opts.invite_headers.clone();
        let extra = extra + self.authorization.as_deref().unwrap_or("");
        let cseq = self.invite_cseq;
        self.request("INVITE", cseq, &extra, &body, true)
    }

    /// Sends the INVITE (without waiting for an answer).
    pub async fn send_invite(&mut self) {
        let req = self.invite_text();
        self.send_raw(req.as_bytes()).await;
    }

    /// Places the call: INVITE, 200, ACK. Returns the final status.
    pub async fn call(&mut self) -> u16 {
        self.call_pressing_before_ack("").await
    }

    /// Places the call, keying `digits` (RFC 4733) between the 200 and the ACK, as a dialer
    /// that sends DTMF the moment it is answered can.
    pub async fn call_pressing_before_ack(&mut self, digits: &str) -> u16 {
        let status = self.invite_until_answered().await;
        if status == 200 {
            if !digits.is_empty() {
                self.press(digits).await;
            }
            self.ack().await;
        }
        status
    }

    /// Sends the INVITE and waits for its final response, which it keeps; a failure is ACKed
    /// here, a 200 is left for `ack`. Returns the status (0: none came).
    pub async fn invite_until_answered(&mut self) -> u16 {
        self.send_invite().await;
        let Some(mut resp) = self.final_response("INVITE", 10).await else {
            return 0;
        };
        self.invite_response = Some(resp.clone());
        if resp.status() == Some(401) && self.opts.digest.is_some() {
            self.ack_failure().await;
            self.authorization = Some(self.answer_challenge(&resp));
            self.to_tag = None;
            self.invite_cseq += 1;
            self.cseq = self.invite_cseq;
            self.send_invite().await;
            let Some(again) = self.final_response("INVITE", 10).await else {
                return 0;
            };
            resp = again;
            self.invite_response = Some(resp.clone());
        }
        let status = resp.status().unwrap_or(0);
        if status != 200 {
            self.ack_failure().await;
            return status;
        }
        self.to_tag = resp
            .header("To")
            .and_then(|t| t.split(";tag=").nth(1))
            .map(|t| t.split(';').next().unwrap_or(t).to_string());
        let mut route_set: Vec<String> = resp
            .headers("Record-Route")
            .flat_map(|v| v.split(','))
            .map(|r| r.trim().to_string())
            .collect();
        route_set.reverse();
        self.remote_target = (!route_set.is_empty())
            .then(|| resp.header("Contact"))
            .flatten()
            .map(|c| {
                c.trim_start_matches('<')
                    .split('>')
                    .next()
                    .unwrap_or(c)
                    .to_string()
            });
        self.route_set = route_set;
        self.learn_answer(&resp);
        200
    }

    /// The Authorization header line answering the challenge of `opts.digest`'s algorithm
    /// in a 401 (RFC 8760, qop=auth, nonce count 1).
    fn answer_challenge(&self, resp: &SipMsg) -> String {
        let (user, password, algorithm) = self.opts.digest.clone().unwrap();
        let challenge = resp
            .headers("WWW-Authenticate")
            .find(|c| c.contains(&format!("algorithm={algorithm},")))
            .unwrap_or_else(|| panic!("no {algorithm} challenge in {resp:?}"));
        let uri = self.request_uri();
        let account = (user.as_str(), password.as_str());
        let value = agentgw::digest::authorization(challenge, account, "INVITE", &uri, 1);
        format!(
            "Authorization: {}\r\n",
            value.expect("a challenge to answer")
        )
    }

    /// Takes the gateway's SDP answer in `resp` (a 200 to our INVITE): where and how to send
    /// RTP and keys.
    pub fn learn_answer(&mut self, resp: &SipMsg) {
        let sdp = resp.body().to_string();
        let media = agentgw::sdp::parse(sdp.as_bytes()).expect("gateway SDP parses");
        self.remote_rtp = Some(media.addr);
        self.codec = media.codecs[0];
        if let Some(te) = media.telephone_event {
            self.te_pt = Some(te);
        }
        // SRTP when the gateway answered our key with one of its own.
        match (media.crypto.first(), &self.srtp_key) {
            (Some(theirs), Some(ours)) => {
                assert_eq!(theirs.key.suite, ours.suite, "the suite offered");
                *self.srtp_rx.lock().unwrap() = Some(srtp::Receiver::new(&theirs.key));
                self.srtp_tx = Some(srtp::Sender::new(ours));
            }
            _ => {
                *self.srtp_rx.lock().unwrap() = None;
                self.srtp_tx = None;
            }
        }
        self.answer_sdp = Some(sdp);
    }

    /// Sends an RTP packet from `socket` to `to`, protected when the call is SRTP.
    async fn send_rtp(&mut self, socket: &UdpSocket, pkt: &[u8], to: SocketAddr) {
        let mut buf = [0u8; 2048];
        buf[..pkt.len()].copy_from_slice(pkt);
        let len = match self.srtp_tx.as_mut() {
            Some(tx) => tx.protect(&mut buf, pkt.len()).unwrap(),
            None => pkt.len(),
        };
        socket.send_to(&buf[..len], to).await.ok();
    }

    /// ACKs the 200 (with the answer SDP for a late offer) and sends a first audio packet.
    pub async fn ack(&mut self) {
        let ack_body = if self.opts.late_offer {
            // Answer with the gateway's first codec; keep the gateway's telephone-event type.
            let mut opts = self.opts.clone();
            opts.codecs = vec![self.codec];
            opts.telephone_event = self.te_pt;
            let saved = std::mem::replace(&mut self.opts, opts);
            let s = self.our_sdp();
            self.opts = saved;
            s
        } else {
            String::new()
        };
        let ack = self.request("ACK", self.invite_cseq, "", &ack_body, true);
        self.send_raw(ack.as_bytes()).await;
        // A first packet so the gateway can latch (symmetric RTP), as real phones do.
        self.send_audio_frame().await;
    }

    /// Sends an INVITE with `body` as its SDP and returns the final response (ACKed).
    pub async fn raw_invite(&mut self, body: &str) -> SipMsg {
        let req = self.request("INVITE", 1, "", body, true);
        self.send_raw(req.as_bytes()).await;
        let r = self
            .final_response("INVITE", 5)
            .await
            .expect("INVITE answered");
        self.invite_response = Some(r.clone());
        self.ack_failure().await;
        r
    }

    /// Sends an out-of-dialog request of `method` and returns the final response.
    pub async fn raw_request(&mut self, method: &str) -> SipMsg {
        let req = self.request(method, 1, "", "", true);
        self.send_raw(req.as_bytes()).await;
        self.final_response(method, 5)
            .await
            .expect("request answered")
    }

    /// Header `name` of the final answer to the INVITE ("" when absent or not yet answered).
    pub fn answer_header(&self, name: &str) -> String {
        let answer = self.invite_response.as_ref();
        answer
            .and_then(|r| r.header(name))
            .unwrap_or_default()
            .to_string()
    }

    pub fn set_to_tag(&mut self, tag: &str) {
        self.to_tag = Some(tag.to_string());
    }

    /// ACK for a non-2xx final response (same branch as the INVITE).
    pub async fn ack_failure(&mut self) {
        let resp = self.invite_response.clone();
        if let Some(r) = resp {
            self.to_tag = r
                .header("To")
                .and_then(|t| t.split(";tag=").nth(1))
                .map(|t| t.to_string());
        }
        let cseq = self.invite_cseq;
        let ack = self.request("ACK", cseq, "", "", false);
        self.send_raw(ack.as_bytes()).await;
    }

    pub async fn send_cancel(&mut self) {
        let req = self.request("CANCEL", self.invite_cseq, "", "", false);
        self.send_raw(req.as_bytes()).await;
    }

    /// Where the gateway wants this call's RTP (from its SDP).
    pub fn gateway_rtp(&self) -> Option<SocketAddr> {
        self.remote_rtp
    }

    pub async fn send_audio_frame(&mut self) {
        let Some(to) = self.remote_rtp else { return };
        let silence = *self.codec.silence();
        let pkt = self
            .writer
            .packet(self.codec.payload_type(), &silence, FRAME_SAMPLES as u32)
            .to_vec();
        let socket = self.rtp.clone();
        self.send_rtp(&socket, &pkt, to).await;
    }

    /// Keys `digits` as RFC 4733 events: per key three start packets and three end packets
    /// sharing one timestamp, 20 ms apart, then a 40 ms gap.
    pub async fn press(&mut self, digits: &str) {
        let socket = self.rtp.clone();
        self.press_from(&socket, digits).await
    }

    /// Keys `digits` as `press` does, but from `socket`: a third party who found this call's
    /// RTP port, keying into the call.
    pub async fn press_from(&mut self, socket: &UdpSocket, digits: &str) {
        let te = self.te_pt.expect("telephone-event negotiated");
        let to = self.remote_rtp.expect("call established");
        for c in digits.chars() {
            let d = Digit::from_char(c).unwrap();
            let mut w = std::mem::take(&mut self.writer);
            // All packets of one event share its start timestamp.
            let mut packets = Vec::new();
            for i in 0..6u16 {
                let end = i >= 3;
                let payload = rfc4733::encode(d, end, 160 * (i.min(3) + 1));
                packets.push(w.packet(te, &payload, 0).to_vec());
            }
            w.skip(160 * 6);
            self.writer = w;
            for p in packets {
                self.send_rtp(socket, &p, to).await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
    }

    /// Sends an in-dialog INFO with `content_type` and `body`; returns the status.
    pub async fn info(&mut self, content_type: &str, body: &str) -> Option<u16> {
        self.cseq += 1;
        let extra = format!("Content-Type: {content_type}\r\n");
        let req = self.request("INFO", self.cseq, &extra, "", true);
        // `request` writes Content-Length for an empty body: rebuild with the body.
        let req = req.replace(
            "Content-Length: 0\r\n\r\n",
            &format!("Content-Length: {}\r\n\r\n{body}", body.len()),
        );
        self.send_raw(req.as_bytes()).await;
        self.final_response("INFO", 5)
            .await
            .and_then(|m| m.status())
    }

    /// Sends an INFO without body, as some PBXs do to check that a call is alive.
    pub async fn info_keepalive(&mut self) -> Option<u16> {
        self.cseq += 1;
        let req = self.request("INFO", self.cseq, "", "", true);
        self.send_raw(req.as_bytes()).await;
        self.final_response("INFO", 5)
            .await
            .and_then(|m| m.status())
    }

    /// Keys `digits` as SIP INFO application/dtmf-relay, in the shapes phones use.
    pub async fn press_info(&mut self, digits: &str) {
        for (i, c) in digits.chars().enumerate() {
            let status = match (i % 3, c) {
                (0, '#') => {
                    self.info("application/dtmf-relay", "Signal=11\r\nDuration=160\r\n")
                        .await
                }
                (0, _) => {
                    self.info(
                        "application/dtmf-relay",
                        &format!("Signal={c}\r\nDuration=160\r\n"),
                    )
                    .await
                }
                (1, _) => {
                    self.info(
                        "application/dtmf-relay",
                        &format!("Duration=100\nSignal= {c}"),
                    )
                    .await
                }
                _ => self.info("application/dtmf", &c.to_string()).await,
            };
            assert_eq!(status, Some(200), "INFO for {c}");
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    }

    /// One 20 ms frame of audio: the tones of `key` (or silence), at 8 kHz from sample `start`.
    fn tone_frame(&self, key: Option<char>, start: usize) -> Frame {
        let mut f = *self.codec.silence();
        if let Some((lo, hi)) = key.map(dtmf_freqs) {
            for (n, out) in f.iter_mut().enumerate() {
                let t = (start + n) as f32 / 8000.0;
                let v = 8000.0 * (2.0 * std::f32::consts::PI * lo * t).sin()
                    + 8000.0 * (2.0 * std::f32::consts::PI * hi * t).sin();
                *out = self.codec.encode(v as i16);
            }
        }
        f
    }

    /// Keys `digits` as tones in the audio (60 ms tone, 60 ms silence), optionally with RFC 4733
    /// events for the same keys in the same stream, as a phone with "in-band + RFC 2833" does.
    pub async fn press_tones(&mut self, digits: &str, with_events: bool) {
        let to = self.remote_rtp.expect("call established");
        let te = self.te_pt;
        let mut sample = 0usize;
        for c in digits.chars() {
            let d = Digit::from_char(c).unwrap();
            let event_ts = self.writer_timestamp();
            for slot in 0..6 {
                let key = (slot < 3).then_some(c);
                let frame = self.tone_frame(key, sample);
                sample += FRAME_SAMPLES;
                let pkt = self
                    .writer
                    .packet(self.codec.payload_type(), &frame, 0)
                    .to_vec();
                let socket = self.rtp.clone();
                self.send_rtp(&socket, &pkt, to).await;
                if let (true, Some(te), true) = (with_events, te, slot < 5) {
                    let payload = rfc4733::encode(d, slot >= 3, 160 * (slot as u16 + 1).min(4));
                    let pkt = raw_rtp(te, slot as u16, event_ts, self.writer.ssrc(), &payload);
                    self.send_rtp(&socket, &pkt, to).await;
                }
                self.writer.skip(FRAME_SAMPLES as u32);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    fn writer_timestamp(&self) -> u32 {
        self.writer.timestamp()
    }

    pub async fn hangup(&mut self) -> Option<u16> {
        self.cseq += 1;
        let req = self.request("BYE", self.cseq, "", "", true);
        self.send_raw(req.as_bytes()).await;
        self.final_response("BYE", 5).await.and_then(|m| m.status())
    }

    pub async fn options(&mut self) -> Option<SipMsg> {
        self.call_id = format!("{}@test-phone", rand_token());
        self.to_tag = None;
        let req = self.request("OPTIONS", 1, "Accept: application/sdp\r\n", "", true);
        self.send_raw(req.as_bytes()).await;
        self.final_response("OPTIONS", 5).await
    }

    /// Sends a re-INVITE with `direction` (sendonly = hold, sendrecv = unhold).
    pub async fn reinvite(&mut self, direction: &str) -> Option<SipMsg> {
        let body = self
            .our_sdp()
            .replace("a=sendrecv", &format!("a={direction}"));
        self.reinvite_with(&body).await
    }

    /// A re-INVITE with this SDP body; the final response (ACKed).
    pub async fn reinvite_with(&mut self, body: &str) -> Option<SipMsg> {
        self.cseq += 1;
        let req = self.request("INVITE", self.cseq, "", body, true);
        self.send_raw(req.as_bytes()).await;
        let resp = self.final_response("INVITE", 5).await?;
        let ack = self.request("ACK", self.cseq, "", "", true);
        self.send_raw(ack.as_bytes()).await;
        Some(resp)
    }

    /// The CSeq number of the last request sent in the dialog.
    pub fn cseq(&self) -> u32 {
        self.cseq
    }

    /// Sends the ACK of the (re-)INVITE with CSeq number `cseq`.
    pub async fn ack_cseq(&mut self, cseq: u32) {
        let ack = self.request("ACK", cseq, "", "", true);
        self.send_raw(ack.as_bytes()).await;
    }

    /// Waits until the gateway hangs up; returns its X-Agentgw-Result.
    pub async fn wait_for_bye(&self, secs: u64) -> Option<String> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            if let Some(bye) = self
                .requests
                .lock()
                .unwrap()
                .iter()
                .find(|m| m.method() == Some("BYE"))
            {
                return Some(bye.header("X-Agentgw-Result").unwrap_or("").to_string());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    /// How many requests of `method` the gateway sent this phone.
    pub fn requests_named(&self, method: &str) -> usize {
        let requests = self.requests.lock().unwrap();
        requests
            .iter()
            .filter(|m| m.method() == Some(method))
            .count()
    }

    /// A header of the gateway's BYE, once it came.
    pub fn bye_header(&self, name: &str) -> Option<String> {
        let requests = self.requests.lock().unwrap();
        let bye = requests.iter().find(|m| m.method() == Some("BYE"))?;
        bye.header(name).map(str::to_string)
    }

    /// Waits until `prompt` has been heard to its end (or `secs` pass).
    pub async fn wait_for_prompt(&self, prompt: PromptId, secs: u64) -> bool {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            if self
                .heard()
                .iter()
                .any(|h| h.prompt == prompt && h.complete)
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// Waits up to 10 s for `prompt` to be heard whole; fails the test with what was heard
    /// instead.
    pub async fn expect_prompt(&self, prompt: PromptId) {
        if !self.wait_for_prompt(prompt, 10).await {
            panic!("{prompt:?} not heard in 10 s; heard {:?}", self.heard());
        }
    }

    /// Waits until `prompt` starts.
    pub async fn wait_for_prompt_start(&self, prompt: PromptId, secs: u64) -> bool {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            if self.heard().iter().any(|h| h.prompt == prompt) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    /// The prompts heard so far, in order.
    pub fn heard(&self) -> Vec<Heard> {
        let index = prompt_index(self.codec);
        let received = self.received.lock().unwrap();
        let mut out: Vec<(PromptId, usize, usize, std::collections::HashSet<usize>)> = Vec::new();
        for r in received.iter() {
            if r.payload.len() != FRAME_SAMPLES || r.payload_type != self.codec.payload_type() {
                continue;
            }
            let mut f: Frame = [0; FRAME_SAMPLES];
            f.copy_from_slice(&r.payload);
            let Some(&(p, i)) = index.frames.get(&f) else {
                continue;
            };
            match out.last_mut() {
                Some((lp, count, last_i, seen)) if *lp == p && i > *last_i => {
                    *count += 1;
                    *last_i = i;
                    seen.insert(i);
                }
                _ => out.push((p, 1, i, [i].into_iter().collect())),
            }
        }
        out.into_iter()
            .map(|(p, frames, _, seen)| Heard {
                prompt: p,
                frames,
                complete: seen.len() * 100 >= index.unique_count[&p] * 95,
            })
            .collect()
    }

    pub fn heard_ids(&self) -> Vec<PromptId> {
        self.heard().into_iter().map(|h| h.prompt).collect()
    }
}

struct PromptIndex {
    /// Frame → (prompt, index) for frames found in exactly one prompt.
    frames: HashMap<Frame, (PromptId, usize)>,
    unique_count: HashMap<PromptId, usize>,
}

fn prompt_index(codec: Codec) -> Arc<PromptIndex> {
    static CACHE: std::sync::OnceLock<Mutex<HashMap<Codec, Arc<PromptIndex>>>> =
        std::sync::OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(i) = cache.lock().unwrap().get(&codec) {
        return i.clone();
    }
    let catalog = Catalog::load(None).unwrap();
    let mut owners: HashMap<Frame, Vec<(PromptId, usize)>> = HashMap::new();
    for p in PromptId::ALL {
        for (i, f) in catalog.get(p).frames(codec).iter().enumerate() {
            let e = owners.entry(*f).or_default();
            if !e.iter().any(|(q, _)| *q == p) {
                e.push((p, i));
            }
        }
    }
    // Silence is what the gateway sends between prompts: never evidence of a prompt.
    let frames: HashMap<Frame, (PromptId, usize)> = owners
        .into_iter()
        .filter(|(f, v)| v.len() == 1 && f != codec.silence())
        .map(|(f, v)| (f, v[0]))
        .collect();
    let mut unique_count = HashMap::new();
    for (p, _) in frames.values() {
        *unique_count.entry(*p).or_insert(0) += 1;
    }
    let idx = Arc::new(PromptIndex {
        frames,
        unique_count,
    });
    cache.lock().unwrap().insert(codec, idx.clone());
    idx
}

/// An RTP packet built by hand (for events that keep their start timestamp).
fn raw_rtp(pt: u8, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, pt & 0x7F];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// Row and column frequency of a key.
pub fn dtmf_freqs(key: char) -> (f32, f32) {
    const ROWS: [f32; 4] = [697.0, 770.0, 852.0, 941.0];
    const COLS: [f32; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
    const KEYS: [&str; 4] = ["123A", "456B", "789C", "*0#D"];
    for (r, row) in KEYS.iter().enumerate() {
        if let Some(c) = row.find(key) {
            return (ROWS[r], COLS[c]);
        }
    }
    panic!("no key {key}")
}

fn frame_tcp(buf: &[u8]) -> Option<(SipMsg, usize)> {
    let start = buf.iter().position(|b| !b.is_ascii_whitespace())?;
    let buf2 = &buf[start..];
    let end = buf2.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&buf2[..end]).ok()?;
    let len: usize = head
        .split("\r\n")
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length") || k.trim() == "l")
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0);
    let total = end + 4 + len;
    if buf2.len() < total {
        return None;
    }
    Some((SipMsg::parse(&buf2[..total])?, start + total))
}

/// The value of the unlabelled counter or gauge `name` in a `/metrics` text.
pub fn metric(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// Something this machine cannot check (`what`: which and why), said loudly on stderr; under
/// `CI=true`, where `.ci/run` provides everything the tests need, a failure.
pub fn not_checked_loudly(what: &str) {
    assert!(
        !std::env::var("CI").is_ok_and(|v| v == "true"),
        "in CI this must be checked: {what}"
    );
    eprintln!("\n*** NOT CHECKED LOUDLY: {what} ***\n");
}

/// One HTTP/1.1 request (Connection: close); the status and the body (chunked bodies
/// decoded).
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<(&str, &str)>,
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let (ct, body) = body.unwrap_or(("", ""));
    let ct = if ct.is_empty() {
        String::new()
    } else {
        format!("Content-Type: {ct}\r\n")
    };
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}{ct}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    // Read the head, then the body by its Content-Length, its chunks, or to the end (some
    // servers keep the connection open whatever the request said).
    let read = async {
        let mut resp = Vec::new();
        let mut buf = [0u8; 16384];
        loop {
            let n = s.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            resp.extend_from_slice(&buf[..n]);
            let Some(end) = resp.windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            let head = String::from_utf8_lossy(&resp[..end]).to_ascii_lowercase();
            let body = &resp[end + 4..];
            if let Some(len) = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
            {
                if body.len() >= len {
                    break;
                }
            } else if head.contains("transfer-encoding: chunked") && body.ends_with(b"0\r\n\r\n") {
                break;
            }
        }
        resp
    };
    let resp = timeout(Duration::from_secs(30), read)
        .await
        .expect("the HTTP server answers within 30 s");
    let resp = String::from_utf8_lossy(&resp).to_string();
    let status = resp.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut dec = Chunked::default();
        dec.feed(body.as_bytes())
    } else {
        body.to_string()
    };
    (status, body)
}

/// An incremental decoder of a chunked HTTP body.
#[derive(Default)]
pub struct Chunked {
    buf: Vec<u8>,
}

impl Chunked {
    /// Adds bytes; returns the body text decoded so far from complete chunks.
    pub fn feed(&mut self, data: &[u8]) -> String {
        self.buf.extend_from_slice(data);
        let mut out = Vec::new();
        while let Some(nl) = self.buf.windows(2).position(|w| w == b"\r\n") {
            let size = std::str::from_utf8(&self.buf[..nl])
                .ok()
                .and_then(|h| usize::from_str_radix(h.trim(), 16).ok())
                .unwrap_or(0);
            if self.buf.len() < nl + 2 + size + 2 {
                break;
            }
            out.extend_from_slice(&self.buf[nl + 2..nl + 2 + size]);
            self.buf.drain(..nl + 2 + size + 2);
            if size == 0 {
                break;
            }
        }
        String::from_utf8_lossy(&out).to_string()
    }
}

/// A consumer of the admin event stream (`GET /api/events`).
pub struct EventStream {
    stream: TcpStream,
    chunks: Chunked,
    text: String,
    /// Was the answer 200 with `text/event-stream`?
    pub status: u16,
}

/// One event of the stream.
#[derive(Debug, Clone)]
pub struct StreamEvent {
    pub id: i64,
    pub event: String,
    pub data: serde_json::Value,
}

impl EventStream {
    pub async fn connect(
        addr: SocketAddr,
        token: &str,
        last_event_id: Option<i64>,
        query: &str,
    ) -> EventStream {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let resume = last_event_id
            .map(|i| format!("Last-Event-ID: {i}\r\n"))
            .unwrap_or_default();
        let req = format!(
            "GET /api/events{query} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n{resume}Accept: text/event-stream\r\n\r\n"
        );
        stream.write_all(req.as_bytes()).await.unwrap();
        // The head.
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if timeout(Duration::from_secs(10), stream.read_exact(&mut byte))
                .await
                .is_err()
            {
                break;
            }
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head);
        let status = head.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
        EventStream {
            stream,
            chunks: Chunked::default(),
            text: String::new(),
            status,
        }
    }

    /// The next event, or None after `secs` without one.
    pub async fn next(&mut self, secs: u64) -> Option<StreamEvent> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            while let Some(end) = self.text.find("\n\n") {
                let block: String = self.text.drain(..end + 2).collect();
                let mut ev = StreamEvent {
                    id: 0,
                    event: String::new(),
                    data: serde_json::Value::Null,
                };
                let mut has_data = false;
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        ev.id = v.trim().parse().unwrap_or(0);
                    } else if let Some(v) = line.strip_prefix("event:") {
                        ev.event = v.trim().to_string();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        ev.data = serde_json::from_str(v.trim()).unwrap_or_default();
                        has_data = true;
                    }
                }
                if has_data {
                    return Some(ev);
                }
            }
            let mut buf = [0u8; 4096];
            let n = match tokio::time::timeout_at(deadline, self.stream.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => n,
                _ => return None,
            };
            let text = self.chunks.feed(&buf[..n]);
            self.text.push_str(&text);
        }
    }
}

/// A phone calling over TCP logs 1001 in.
pub async fn logs_in_over_tcp(gateway: std::net::SocketAddr) {
    let opts = PhoneOptions {
        transport: Transport::Tcp,
        ..Default::default()
    };
    let mut phone = Phone::new(gateway, opts).await;
    assert_eq!(phone.call().await, 200);
    phone.press("1001#1234#").await;
    assert_eq!(phone.wait_for_bye(10).await.as_deref(), Some("logged-in"));
}
