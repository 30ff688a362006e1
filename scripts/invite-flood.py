#!/usr/bin/env python3
"""A flood of INVITEs over UDP, each a new call, none ever ACKed (as when the source address
is forged): counts what comes back, during the flood and for LINGER seconds after. Used by
scripts/refusal-flood.sh.

usage: invite-flood.py HOST PORT RATE SECS LINGER
  METHOD=OPTIONS   OPTIONS instead of INVITEs
  SOURCES=N        from N addresses in turn (127.0.0.2, 127.0.0.3, …) instead of 127.0.0.1"""
import collections, os, random, socket, sys, time

host, port = sys.argv[1], int(sys.argv[2])
rate, secs, linger = int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
method = os.environ.get("METHOD", "INVITE")
n = int(os.environ.get("SOURCES", "0"))
addrs = ["127.0.0.1"] if n == 0 else [f"127.{(k + 2) >> 16 & 255}.{(k + 2) >> 8 & 255}.{(k + 2) & 255}" for k in range(n)]
socks = []
for a in addrs:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20 if n == 0 else 1 << 20)
    s.bind((a, 0))
    s.setblocking(False)
    socks.append(s)
sdp = ("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
       "m=audio 4000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n")


def request(i, me):
    b = "z9hG4bK%x%d" % (random.getrandbits(40), i)
    head = (f"{method} sip:login@{host}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {me[0]}:{me[1]};branch={b};rport\r\nMax-Forwards: 70\r\n"
            f"From: <sip:{1000 + i % 5000}@test.example>;tag=f{i}\r\nTo: <sip:login@{host}>\r\n"
            f"Call-ID: flood{i}-{random.getrandbits(32)}\r\nCSeq: 1 {method}\r\n")
    if method != "INVITE":
        return (head + "Content-Length: 0\r\n\r\n").encode()
    return (head + f"Contact: <sip:x@{me[0]}:{me[1]}>\r\nContent-Type: application/sdp\r\n"
            f"Content-Length: {len(sdp)}\r\n\r\n{sdp}").encode()


names = [s.getsockname() for s in socks]
sent = 0
codes = collections.Counter()
t0 = time.monotonic()


def drain():
    for s in socks:
        while True:
            try:
                d = s.recv(65535)
            except BlockingIOError:
                break
            first = d.split(b"\r\n", 1)[0].split(b" ")
            # "SIP/2.0 503 ..." for an answer, "BYE sip:... SIP/2.0" for a request.
            codes[first[1].decode() if first[0] == b"SIP/2.0" else first[0].decode()] += 1


while True:
    now = time.monotonic() - t0
    if now >= secs:
        break
    due = int(now * rate)
    while sent < due:
        k = sent % len(socks)
        try:
            socks[k].sendto(request(sent, names[k]), (host, port))
            sent += 1
        except BlockingIOError:
            break
    drain()
    time.sleep(0.001)
end = time.monotonic() + linger
while time.monotonic() < end:
    drain()
    time.sleep(0.01)
print(f"sent {sent} {method}s from {len(socks)} address(es) in {secs:.0f} s; received: "
      f"{dict(sorted(codes.items()))}; messages per request {sum(codes.values()) / max(sent, 1):.2f}")
