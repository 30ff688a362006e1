#!/usr/bin/env python3
"""One call (INVITE, 200, ACK), then re-INVITEs inside its dialog, RATE a second for SECS
seconds, none ever ACKed: counts what comes back, during the flood and for LINGER seconds
after. Used by scripts/refusal-flood.sh (IN_DIALOG=1).

usage: reinvite-flood.py HOST PORT RATE SECS LINGER   (METHOD=INFO: INFO instead)"""
import collections, os, random, socket, sys, time
host, port, rate, secs, linger = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
method = os.environ.get("METHOD", "INVITE")
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); me = s.getsockname()
r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); r.bind(("127.0.0.1", 0)); rtp = r.getsockname()[1]
sdp = f"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {rtp} RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n"
callid = "ri%x" % random.getrandbits(48)
def req(m, cseq, totag, body="", branch=None):
    b = branch or "z9hG4bK%x" % random.getrandbits(48)
    ct = "Content-Type: application/sdp\r\n" if body else ""
    return (f"{m} sip:login@{host}:{port} SIP/2.0\r\nVia: SIP/2.0/UDP {me[0]}:{me[1]};branch={b};rport\r\nMax-Forwards: 70\r\n"
            f"From: <sip:2001@test.example>;tag=ft1\r\nTo: <sip:login@{host}>{totag}\r\nCall-ID: {callid}\r\nCSeq: {cseq} {m}\r\n"
            f"Contact: <sip:x@{me[0]}:{me[1]}>\r\n{ct}Content-Length: {len(body)}\r\n\r\n{body}").encode()
s.sendto(req("INVITE", 1, "", sdp), (host, port))
s.settimeout(5)
while True:
    d = s.recv(65535).decode(errors="replace")
    if d.startswith("SIP/2.0 200"): break
to = [l for l in d.split("\r\n") if l.lower().startswith("to:")][0]
tag = ";tag=" + to.split(";tag=")[1].split(";")[0]
s.sendto(req("ACK", 1, tag), (host, port))
s.setblocking(False)
codes = collections.Counter(); sent = 0; t0 = time.monotonic()
def drain():
    while True:
        try: d = s.recv(65535)
        except BlockingIOError: return
        first = d.split(b"\r\n", 1)[0].split(b" ")
        codes[first[1].decode() if first[0] == b"SIP/2.0" else first[0].decode()] += 1
while time.monotonic() - t0 < secs:
    due = int((time.monotonic() - t0) * rate)
    while sent < due:
        s.sendto(req(method, 2 + sent, tag, sdp if method == "INVITE" else ""), (host, port)); sent += 1
    drain(); time.sleep(0.001)
end = time.monotonic() + linger
while time.monotonic() < end: drain(); time.sleep(0.01)
print(f"sent {sent} {method}s in one call's dialog in {secs:.0f} s; received: {dict(sorted(codes.items()))}; "
      f"messages per request {sum(codes.values()) / max(sent, 1):.2f}")
