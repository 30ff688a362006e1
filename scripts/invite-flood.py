#!/usr/bin/env python3
"""A flood of INVITEs over UDP from one socket, each a new call, none ever ACKed (as when the
source address is forged): counts what comes back to that address, during the flood and for
LINGER seconds after. Used by scripts/refusal-flood.sh.

usage: invite-flood.py HOST PORT RATE SECS LINGER   (METHOD=OPTIONS: OPTIONS instead)"""
import collections, os, random, socket, sys, time
host, port, rate, secs, linger = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
s.bind(("127.0.0.1", 0))
s.setblocking(False)
me = s.getsockname()
sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n"
method = os.environ.get("METHOD", "INVITE")
def invite(i):
    if method != "INVITE":
        b = "z9hG4bK%x%d" % (random.getrandbits(40), i)
        return (f"{method} sip:login@{host}:{port} SIP/2.0\r\nVia: SIP/2.0/UDP {me[0]}:{me[1]};branch={b};rport\r\n"
                f"Max-Forwards: 70\r\nFrom: <sip:{1000+i%5000}@test.example>;tag=f{i}\r\nTo: <sip:login@{host}>\r\n"
                f"Call-ID: flood{i}-{random.getrandbits(32)}\r\nCSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n").encode()
    b = "z9hG4bK%x%d" % (random.getrandbits(40), i)
    return (f"INVITE sip:login@{host}:{port} SIP/2.0\r\nVia: SIP/2.0/UDP {me[0]}:{me[1]};branch={b};rport\r\n"
            f"Max-Forwards: 70\r\nFrom: <sip:{1000+i%5000}@test.example>;tag=f{i}\r\nTo: <sip:login@{host}>\r\n"
            f"Call-ID: flood{i}-{random.getrandbits(32)}\r\nCSeq: 1 INVITE\r\nContact: <sip:x@{me[0]}:{me[1]}>\r\n"
            f"Content-Type: application/sdp\r\nContent-Length: {len(sdp)}\r\n\r\n{sdp}").encode()
sent = 0; codes = collections.Counter(); t0 = time.monotonic()
def drain():
    while True:
        try: d = s.recv(65535)
        except BlockingIOError: return
        first = d.split(b"\r\n", 1)[0].split(b" ")
        # "SIP/2.0 503 ..." for an answer, "BYE sip:... SIP/2.0" for a request.
        codes[first[1].decode() if first[0] == b"SIP/2.0" else first[0].decode()] += 1
while True:
    now = time.monotonic() - t0
    if now >= secs: break
    due = int(now * rate)
    while sent < due:
        try: s.sendto(invite(sent), (host, port)); sent += 1
        except BlockingIOError: break
    drain(); time.sleep(0.001)
end = time.monotonic() + linger
while time.monotonic() < end:
    drain(); time.sleep(0.01)
print(f"sent {sent} {method}s in {secs:.0f} s; received: {dict(sorted(codes.items()))}; messages per request {sum(codes.values())/max(sent,1):.2f}")
