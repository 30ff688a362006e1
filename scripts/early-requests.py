#!/usr/bin/env python3
"""CALLS calls from one address, each answered 200 and never ACKed, with PER INFOs sent in
each call's dialog before the (missing) ACK, as fast as the per-source limit allows: what the
gateway holds for requests that wait for an ACK. Counts the answers, during the flood and for
LINGER seconds after (the calls end without their ACK after 32 s: the INFOs then get 481).
Used by scripts/refusal-flood.sh (EARLY=1: RATE is CALLS, SECS is PER).

usage: early-requests.py HOST PORT CALLS PER LINGER"""
import collections, os, random, socket, sys, time
host, port, calls, per, linger = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); me = s.getsockname()
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 24)
sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 9 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n"
def req(m, callid, cseq, totag, body="", ct="application/sdp"):
    b = "z9hG4bK%x" % random.getrandbits(48)
    cth = f"Content-Type: {ct}\r\n" if body else ""
    return (f"{m} sip:login@{host}:{port} SIP/2.0\r\nVia: SIP/2.0/UDP {me[0]}:{me[1]};branch={b};rport\r\nMax-Forwards: 70\r\n"
            f"From: <sip:2001@test.example>;tag=ft1\r\nTo: <sip:login@{host}>{totag}\r\nCall-ID: {callid}\r\nCSeq: {cseq} {m}\r\n"
            f"Contact: <sip:x@{me[0]}:{me[1]}>\r\n{cth}Content-Length: {len(body)}\r\n\r\n{body}").encode()
codes = collections.Counter(); tags = {}
def handle(d):
    first = d.split(b"\r\n", 1)[0].split(b" ")
    if first[0] != b"SIP/2.0":
        codes[first[0].decode()] += 1; return
    text = d.decode(errors="replace")
    cseq = [l for l in text.split("\r\n") if l.lower().startswith("cseq:")][0].split()[-1]
    codes[f"{first[1].decode()} {cseq}"] += 1
    if cseq == "INVITE" and first[1] == b"200":
        cid = [l for l in text.split("\r\n") if l.lower().startswith("call-id:")][0].split(":", 1)[1].strip()
        to = [l for l in text.split("\r\n") if l.lower().startswith("to:")][0]
        tags.setdefault(cid, ";tag=" + to.split(";tag=")[1].split(";")[0])
def drain(wait=0.0):
    s.settimeout(wait)
    while True:
        try: handle(s.recv(65535))
        except (BlockingIOError, socket.timeout): return
        s.settimeout(0)
ids = ["er%x" % random.getrandbits(48) for _ in range(calls)]
t0 = time.monotonic()
def paced(n, rate):
    """Waits (reading answers) until the n-th datagram is due at `rate` a second: under the
    per-source limit (5,000 a second), in bursts a 212 KiB socket buffer holds."""
    due = t0 + n / rate
    while time.monotonic() < due: drain(max(0.0, min(0.002, due - time.monotonic())))
for n, cid in enumerate(ids):
    paced(n, 1000)
    s.sendto(req("INVITE", cid, 1, "", sdp), (host, port))
deadline = time.monotonic() + 10
while len(tags) < calls and time.monotonic() < deadline: drain(0.1)
t0 = time.monotonic(); sent = 0
for k in range(per):
    for cid in ids:
        if cid not in tags: continue
        paced(sent, 3000)
        s.sendto(req("INFO", cid, 2 + k, tags[cid], "Signal=1\r\nDuration=160\r\n", "application/dtmf-relay"), (host, port)); sent += 1
print(f"{len(tags)} of {calls} calls answered, {sent} INFOs sent before an ACK in {time.monotonic() - t0:.1f} s (3,000 a second)", flush=True)
if os.environ.get("FLOOD_DONE"): open(os.environ["FLOOD_DONE"], "w").close()
end = time.monotonic() + linger
while time.monotonic() < end: drain(0.1)
print(f"received: {dict(sorted(codes.items()))}")
