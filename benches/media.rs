//! Micro-benchmarks of the per-packet media paths.

use agentgw::media::dtmf::inband::InbandDetector;
use agentgw::media::dtmf::rfc4733::{self, EventReceiver};
use agentgw::media::dtmf::Digit;
use agentgw::media::g711;
use agentgw::media::prompts::{Catalog, Codec, PromptId};
use agentgw::media::rtp::RtpWriter;
use criterion::{black_box, criterion_group, criterion_main, Criterion};

fn inband(c: &mut Criterion) {
    // A prompt's audio (speech-like), decoded from µ-law as it arrives on a call.
    let catalog = Catalog::load(None).expect("prompts");
    let frames = catalog
        .get(PromptId::AgentUser)
        .frames(Codec::Pcmu)
        .to_vec();
    let audio: Vec<[i16; 160]> = frames
        .iter()
        .map(|f| {
            let mut out = [0i16; 160];
            for (o, &b) in out.iter_mut().zip(f.iter()) {
                *o = g711::ulaw_to_linear(b);
            }
            out
        })
        .collect();
    let mut d = InbandDetector::new();
    let mut i = 0;
    c.bench_function("inband_detector_20ms_frame", |b| {
        b.iter(|| {
            d.feed(black_box(&audio[i % audio.len()]), |k| {
                black_box(k);
            });
            i += 1;
        })
    });
    let silence = [0i16; 160];
    c.bench_function("inband_detector_20ms_silence", |b| {
        b.iter(|| {
            d.feed(black_box(&silence), |k| {
                black_box(k);
            })
        })
    });
}

fn rtp(c: &mut Criterion) {
    let catalog = Catalog::load(None).expect("prompts");
    let frame = catalog.get(PromptId::AgentUser).frames(Codec::Pcmu)[10];
    let mut w = RtpWriter::default();
    c.bench_function("rtp_packet_from_prompt_frame", |b| {
        b.iter(|| {
            black_box(w.packet(0, black_box(&frame), 160).len());
        })
    });
    let mut r = EventReceiver::default();
    let payload = rfc4733::encode(Digit::from_char('5').expect("digit"), false, 160);
    let mut ts = 0u32;
    c.bench_function("rfc4733_event_parse", |b| {
        b.iter(|| {
            ts = ts.wrapping_add(1);
            black_box(r.on_packet(1, ts, black_box(&payload)));
        })
    });
}

/// The kernel's part of one RTP packet on loopback, as the media threads do it: one tick of
/// `SOCKETS` calls, each sending a 172-byte packet from its own socket (timed: the sends,
/// which on loopback include delivery into the receiver's queue), then the receiving side
/// reading them (timed: one epoll query and one `recvmmsg` per socket). Divide by `SOCKETS`
/// for the cost per packet: the floor under every figure of the load benchmarks.
fn udp_loopback(c: &mut Criterion) {
    use agentgw::media::poll::{Poller, RecvBatch};
    use std::net::UdpSocket;
    use std::time::{Duration, Instant};
    const SOCKETS: usize = 400;
    let bind = || {
        let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
        s.set_nonblocking(true).expect("nonblocking");
        s
    };
    let senders: Vec<UdpSocket> = (0..SOCKETS).map(|_| bind()).collect();
    let receivers: Vec<UdpSocket> = (0..SOCKETS).map(|_| bind()).collect();
    let addrs: Vec<_> = receivers
        .iter()
        .map(|r| r.local_addr().expect("addr"))
        .collect();
    let mut poller = Poller::new(256).expect("epoll");
    for (i, r) in receivers.iter().enumerate() {
        poller.add(r, i as u64).expect("watch");
    }
    let mut batch = RecvBatch::<8, 1500>::default();
    let pkt = [0x80u8; 172];
    let mut ready = Vec::new();
    let send_all = || {
        for (s, to) in senders.iter().zip(&addrs) {
            s.send_to(&pkt, to).expect("send");
        }
    };
    let mut recv_all = |poller: &mut Poller| {
        let mut got = 0;
        while got < SOCKETS {
            ready.clear();
            ready.extend(poller.ready());
            for &t in &ready {
                got += batch.recv(&receivers[t as usize]).expect("recv");
            }
        }
    };
    let mut g = c.benchmark_group("udp_loopback");
    g.throughput(criterion::Throughput::Elements(SOCKETS as u64));
    g.bench_function("send_400_calls_one_packet_each", |b| {
        b.iter_custom(|iters| {
            let mut t = Duration::ZERO;
            for _ in 0..iters {
                let t0 = Instant::now();
                send_all();
                t += t0.elapsed();
                recv_all(&mut poller);
            }
            t
        })
    });
    // The same sends from sockets connect()ed to their peer: the kernel keeps the route and
    // skips the per-packet lookup an unconnected send_to makes.
    let connected: Vec<UdpSocket> = addrs
        .iter()
        .map(|to| {
            let s = bind();
            s.connect(to).expect("connect");
            s
        })
        .collect();
    g.bench_function("send_400_calls_one_packet_each_connected", |b| {
        b.iter_custom(|iters| {
            let mut t = Duration::ZERO;
            for _ in 0..iters {
                let t0 = Instant::now();
                for s in &connected {
                    s.send(&pkt).expect("send");
                }
                t += t0.elapsed();
                recv_all(&mut poller);
            }
            t
        })
    });
    g.bench_function("epoll_recvmmsg_400_calls_one_packet_each", |b| {
        b.iter_custom(|iters| {
            let mut t = Duration::ZERO;
            for _ in 0..iters {
                send_all();
                let t0 = Instant::now();
                recv_all(&mut poller);
                t += t0.elapsed();
            }
            t
        })
    });
    g.finish();
}

/// A whole login through the flow (sans-IO): start, 10 keys, the store's answer, the prompts'
/// ends; every action drained. What one call costs the gateway outside SIP, RTP and the store.
fn login_flow(c: &mut Criterion) {
    use agentgw::login::{CheckOutcome, Flow, FlowConfig, Input};
    use agentgw::media::dtmf::Digit;
    use agentgw::media::prompts::PromptId;
    use std::time::Instant;
    // The flow as the default configuration sets it up.
    let cfg = FlowConfig::from(&agentgw::Config::default().login);
    let keys: Vec<Digit> = "1001#1234#".chars().filter_map(Digit::from_char).collect();
    let now = Instant::now();
    c.bench_function("login_flow_whole_call", |b| {
        b.iter(|| {
            let mut f = Flow::new(cfg.clone());
            let mut n = 0;
            let mut drain = |f: &mut Flow| {
                while let Some(a) = f.poll_action() {
                    black_box(a);
                    n += 1;
                }
            };
            f.handle(Input::Started, now);
            drain(&mut f);
            f.handle(Input::PromptDone(PromptId::AgentUser), now);
            for (i, k) in keys.iter().enumerate() {
                f.handle(Input::Digit(*k), now);
                if i == 4 {
                    f.handle(Input::PromptDone(PromptId::AgentPass), now);
                }
                drain(&mut f);
            }
            f.handle(Input::CheckResult(CheckOutcome::LoggedIn), now);
            f.handle(Input::PromptDone(PromptId::AgentLoginOk), now);
            f.handle(Input::PromptDone(PromptId::Goodbye), now);
            drain(&mut f);
            n
        })
    });
}

/// The check every SIP datagram passes before it is parsed (`[sip]
/// max_packets_per_second_per_source`): 1,000 sources in turn, none over its budget.
fn sip_packet_limiter(c: &mut Criterion) {
    let l = agentgw::limits::PacketLimiter::default();
    l.set_rate(5000);
    let sources: Vec<std::net::IpAddr> = (0..1000u32)
        .map(|i| std::net::IpAddr::from((0x0a00_0000 + i).to_be_bytes()))
        .collect();
    let mut i = 0;
    c.bench_function("sip_packet_limiter_allow", |b| {
        b.iter(|| {
            i = (i + 1) % sources.len();
            black_box(l.allow(sources[i], std::time::Instant::now()))
        })
    });
}

/// The RFC 3261 checks every SIP request passes before the stack parses it, against the
/// stack's own parse of the same INVITE (a softphone's, 840 bytes with its SDP).
fn sip_validate(c: &mut Criterion) {
    let sdp = "v=0\r\no=- 3891 3891 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n\
               m=audio 40000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
               a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n";
    let invite = format!(
        "INVITE sip:login@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds;rport\r\n\
         Max-Forwards: 70\r\nFrom: \"Desk 2001\" <sip:2001@pbx.example>;tag=1928301774\r\n\
         To: <sip:login@192.0.2.1>\r\nCall-ID: a84b4c76e66710@192.0.2.10\r\nCSeq: 314159 INVITE\r\n\
         Contact: <sip:2001@192.0.2.10:5060>\r\nAllow: INVITE, ACK, CANCEL, BYE, OPTIONS, INFO\r\n\
         Supported: replaces, timer\r\nUser-Agent: Softphone 1.0\r\nContent-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    );
    let bytes = invite.as_bytes();
    c.bench_function("sip_validate_invite", |b| {
        b.iter(|| {
            black_box(agentgw::sip::validate::check(
                black_box(bytes),
                65535,
                false,
            ))
        })
    });
    c.bench_function("sip_stack_parse_invite", |b| {
        b.iter(|| black_box(rsipstack::sip::SipMessage::try_from(black_box(bytes)).is_ok()))
    });
}

/// SRTP on a 20 ms PCMU packet: protect (what each sent frame costs) and protect + unprotect
/// (what each received packet costs, its protection made in the same loop), by suite.
fn srtp(c: &mut Criterion) {
    use agentgw::media::srtp::{MasterKey, Receiver, Sender, Suite};
    let catalog = Catalog::load(None).expect("prompts");
    let frame = catalog.get(PromptId::AgentUser).frames(Codec::Pcmu)[10];
    for suite in Suite::ALL {
        let key = MasterKey::generate(suite);
        let (mut tx, mut rx) = (Sender::new(&key), Receiver::new(&key));
        let mut w = RtpWriter::default();
        let mut buf = [0u8; 1600];
        c.bench_function(&format!("srtp_protect_{}", suite.name()), |b| {
            b.iter(|| {
                let pkt = w.packet(0, &frame, 160);
                let n = pkt.len();
                buf[..n].copy_from_slice(pkt);
                black_box(tx.protect(&mut buf, n))
            })
        });
        c.bench_function(&format!("srtp_protect_unprotect_{}", suite.name()), |b| {
            b.iter(|| {
                let pkt = w.packet(0, &frame, 160);
                let n = pkt.len();
                buf[..n].copy_from_slice(pkt);
                let len = tx.protect(&mut buf, n).expect("room");
                black_box(rx.unprotect(&mut buf[..len]).is_ok())
            })
        });
    }
}

criterion_group!(
    benches,
    srtp,
    inband,
    rtp,
    login_flow,
    udp_loopback,
    sip_packet_limiter,
    sip_validate
);
criterion_main!(benches);
