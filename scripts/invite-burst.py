#!/usr/bin/env python3
"""N new calls' INVITEs sent at once over UDP from one address, as a PBX passing on a
shift-start burst can: how many the gateway answers within WAIT seconds without a
retransmission (a phone would retransmit 0.5 s later), and when the first and last answers
came. Each answered call is hung up (ACK, BYE). Used by scripts/refusal-flood.sh (BURST=1:
RATE is N).

usage: invite-burst.py HOST PORT N WAIT"""
import random, socket, sys, time
host, port, n, wait = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); me = s.getsockname()
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 24)
sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 9 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n"
def req(m, callid, cseq, totag, body=""):
    b = "z9hG4bK%x" % random.getrandbits(48)
    ct = "Content-Type: application/sdp\r\n" if body else ""
    return (f"{m} sip:login@{host}:{port} SIP/2.0\r\nVia: SIP/2.0/UDP {me[0]}:{me[1]};branch={b};rport\r\nMax-Forwards: 70\r\n"
            f"From: <sip:{callid}@test.example>;tag=ft1\r\nTo: <sip:login@{host}>{totag}\r\nCall-ID: {callid}\r\nCSeq: {cseq} {m}\r\n"
            f"Contact: <sip:x@{me[0]}:{me[1]}>\r\n{ct}Content-Length: {len(body)}\r\n\r\n{body}").encode()
ids = ["ib%x" % random.getrandbits(48) for _ in range(n)]
msgs = [req("INVITE", cid, 1, "", sdp) for cid in ids]
t0 = time.monotonic()
for m in msgs:
    s.sendto(m, (host, port))
answered = {}
s.settimeout(0.05)
while time.monotonic() - t0 < wait:
    try: d = s.recv(65535).decode(errors="replace")
    except socket.timeout: continue
    if not d.startswith("SIP/2.0 200") or "INVITE\r\n" not in d: continue
    lines = d.split("\r\n")
    cid = [l for l in lines if l.lower().startswith("call-id:")][0].split(":", 1)[1].strip()
    if cid in answered: continue
    to = [l for l in lines if l.lower().startswith("to:")][0]
    answered[cid] = (time.monotonic() - t0, ";tag=" + to.split(";tag=")[1].split(";")[0])
for cid, (_, tag) in answered.items():
    s.sendto(req("ACK", cid, 1, tag), (host, port)); s.sendto(req("BYE", cid, 2, tag), (host, port))
    time.sleep(0.0005)
at = sorted(t for t, _ in answered.values())
print(f"{n} INVITEs at once: {len(answered)} answered within {wait:.0f} s without a retransmission"
      + (f"; first after {at[0] * 1000:.0f} ms, last after {at[-1] * 1000:.0f} ms" if at else ""))
