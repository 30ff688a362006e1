#!/usr/bin/python3
"""A phone whose SRTP is libsrtp's (Debian's libsrtp2 through python3-pylibsrtp): it calls
agentgw over SIP over TLS offering RTP/SAVP with an SDES key of SUITE, protects the agent
number and passcode (RFC 4733 events) with libsrtp, unprotects every packet the gateway sends
with libsrtp, and answers the gateway's BYE. Prints what it did, one key=value a line; exits 0
when the gateway hung up after at least 100 prompt packets that all unprotected, 1 otherwise,
2 when pylibsrtp is missing.

  scripts/libsrtp-phone.py HOST:TLS_PORT CA.pem SUITE AGENT PASSCODE

SUITE: AES_CM_128_HMAC_SHA1_80, AES_CM_128_HMAC_SHA1_32 or AEAD_AES_128_GCM. Run with
Debian's /usr/bin/python3 (the shebang), where apt's python3-pylibsrtp is found.
"""
import base64
import os
import secrets
import socket
import ssl
import struct
import sys
import threading
import time

try:
    import pylibsrtp
except ImportError:
    print("missing pylibsrtp (apt-get install python3-pylibsrtp)", file=sys.stderr)
    sys.exit(2)

PROFILES = {
    "AES_CM_128_HMAC_SHA1_80": (pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80, 30),
    "AES_CM_128_HMAC_SHA1_32": (pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_32, 30),
    "AEAD_AES_128_GCM": (pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM, 28),
}
EVENTS = {str(d): d for d in range(10)} | {"*": 10, "#": 11}
TE_PT = 101


def read_message(tls, buf):
    """The next SIP message on the TLS stream: (start line, headers dict of lists, body)."""
    while b"\r\n\r\n" not in buf:
        chunk = tls.recv(4096)
        if not chunk:
            return None
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode().split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    length = int(headers.get("content-length", ["0"])[0])
    while len(rest) < length:
        chunk = tls.recv(4096)
        if not chunk:
            return None
        rest += chunk
    body, buf[:] = rest[:length], rest[length:]
    return lines[0], headers, body.decode()


def main():
    target, ca, suite, agent, passcode = sys.argv[1:6]
    host, port = target.rsplit(":", 1)
    profile, key_len = PROFILES[suite]
    ours = os.urandom(key_len)

    rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rtp.bind((host, 0))
    rtp.settimeout(0.2)
    rtp_port = rtp.getsockname()[1]

    context = ssl.create_default_context(cafile=ca)
    tls = context.wrap_socket(socket.create_connection((host, int(port)), timeout=10), server_hostname=host)
    local = "%s:%d" % tls.getsockname()[:2]
    print("tls=%s" % tls.version())

    call_id = secrets.token_hex(8) + "@libsrtp-phone"
    # A station of its own for each agent it logs in.
    station = "libsrtp-%s" % agent
    from_ = "<sip:%s@%s>;tag=%s" % (station, host, secrets.token_hex(4))
    uri = "sip:login@%s:%s;transport=tls" % (host, port)
    sdp = (
        "v=0\r\no=libsrtp 1 1 IN IP4 %s\r\ns=-\r\nc=IN IP4 %s\r\nt=0 0\r\n"
        "m=audio %d RTP/SAVP 0 %d\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:%d telephone-event/8000\r\n"
        "a=fmtp:%d 0-16\r\na=crypto:1 %s inline:%s\r\na=sendrecv\r\n"
        % (host, host, rtp_port, TE_PT, TE_PT, TE_PT, suite, base64.b64encode(ours).decode())
    )

    def request(method, cseq, to, body=""):
        return (
            "%s %s SIP/2.0\r\nVia: SIP/2.0/TLS %s;branch=z9hG4bK%s;rport\r\nMax-Forwards: 70\r\n"
            "From: %s\r\nTo: %s\r\nCall-ID: %s\r\nCSeq: %d %s\r\nContact: <sip:%s@%s;transport=tls>\r\n"
            "%sContent-Length: %d\r\n\r\n%s"
            % (method, uri, local, secrets.token_hex(6), from_, to, call_id, cseq, method, station, local,
               "Content-Type: application/sdp\r\n" if body else "", len(body), body)
        ).encode()

    buf = bytearray()
    tls.sendall(request("INVITE", 1, "<sip:login@%s>" % host, sdp))
    while True:
        msg = read_message(tls, buf)
        if msg is None:
            print("result=connection closed before the answer")
            return 1
        start, headers, body = msg
        status = int(start.split()[1])
        if status >= 200:
            break
    print("invite=%d" % status)
    if status != 200:
        return 1
    to = headers["to"][0]
    tls.sendall(request("ACK", 1, to))

    # The answer: where to send, and the gateway's key.
    remote_ip, remote_port, theirs = host, None, None
    for line in body.split("\r\n"):
        if line.startswith("c=IN IP4 "):
            remote_ip = line[9:].strip()
        elif line.startswith("m=audio "):
            remote_port = int(line.split()[1])
            print("answer=%s" % line)
        elif line.startswith("a=crypto:"):
            _, answered, params = line.split(" ", 2)
            print("answer_crypto=%s" % answered)
            theirs = base64.b64decode(params.split("inline:", 1)[1].split("|")[0])
    if theirs is None or remote_port is None:
        print("result=no SRTP key in the answer")
        return 1
    tx = pylibsrtp.Session(pylibsrtp.Policy(key=ours, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND, srtp_profile=profile))
    rx = pylibsrtp.Session(pylibsrtp.Policy(key=theirs, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND, srtp_profile=profile))

    counts = {"unprotected": 0, "refused": 0}
    done = threading.Event()

    def receive():
        while not done.is_set():
            try:
                packet = rtp.recv(2048)
            except socket.timeout:
                continue
            try:
                rx.unprotect(packet)
                counts["unprotected"] += 1
            except pylibsrtp.Error:
                counts["refused"] += 1

    threading.Thread(target=receive, daemon=True).start()

    # The keys, once the first prompt is playing: RFC 4733 events protected by libsrtp.
    time.sleep(1.0)
    ssrc, seq, ts = secrets.randbits(32), secrets.randbits(15), secrets.randbits(31)
    for key in agent + "#" + passcode + "#":
        for i in range(6):
            end = i >= 3
            duration = 160 * (min(i, 3) + 1)
            payload = struct.pack("!BBH", EVENTS[key], (0x80 if end else 0) | 10, duration)
            header = struct.pack("!BBHII", 0x80, (0x80 if i == 0 else 0) | TE_PT, seq & 0xFFFF, ts, ssrc)
            rtp.sendto(tx.protect(header + payload), (remote_ip, remote_port))
            seq += 1
            time.sleep(0.02)
        ts = (ts + 160 * 8) & 0xFFFFFFFF
        time.sleep(0.06)
    print("keys_sent=%s#%s#" % (agent, "*" * len(passcode)))

    # The gateway says the result and hangs up.
    tls.settimeout(20)
    bye = False
    while True:
        try:
            msg = read_message(tls, buf)
        except socket.timeout:
            break
        if msg is None:
            break
        start, headers, _ = msg
        method = start.split()[0]
        if not start.startswith("SIP/2.0"):
            answer = "SIP/2.0 200 OK\r\n" + "".join(
                "%s: %s\r\n" % (name, value)
                for name in ("via", "from", "to", "call-id", "cseq")
                for value in headers.get(name, [])
            ) + "Content-Length: 0\r\n\r\n"
            tls.sendall(answer.encode())
            if method == "BYE":
                bye = True
                break
    time.sleep(0.3)
    done.set()
    print("bye=%s" % ("yes" if bye else "no"))
    print("unprotected=%d refused=%d" % (counts["unprotected"], counts["refused"]))
    try:
        tls.unwrap()  # close_notify
    except (OSError, ValueError):
        pass
    tls.close()
    ok = bye and counts["unprotected"] >= 100 and counts["refused"] == 0
    print("result=%s" % ("ok" if ok else "failed"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
