#!/usr/bin/env python3
"""Writes a pcap of RFC 4733 telephone-event RTP packets for SIPp's play_pcap_audio.

SIPp's own play_dtmf sends events with a fixed payload type that does not match what the
gateway negotiated, so the scenarios replay these pcaps instead. Each key is one event: three
start packets and three end packets sharing one RTP timestamp, 20 ms apart, then a gap.
SIPp rewrites addresses and ports; the payload type, timestamps and timing are kept.

usage: make_dtmf_pcap.py KEYS OUT.pcap [--pt 101] [--gap-ms 60]
  KEYS may contain ',' for a 1 s pause (e.g. "1001#1234#").
"""
import argparse
import random
import struct


def ip_checksum(header: bytes) -> int:
    s = sum(struct.unpack("!10H", header))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def udp_frame(payload: bytes) -> bytes:
    src, dst = bytes([127, 0, 0, 1]), bytes([127, 0, 0, 1])
    udp = struct.pack("!HHHH", 6000, 6000, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x4000, 64, 17, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", ip_checksum(ip)) + ip[12:]
    eth = b"\x00\x00\x00\x00\x00\x02" + b"\x00\x00\x00\x00\x00\x01" + b"\x08\x00"
    return eth + ip + udp


EVENTS = {**{str(d): d for d in range(10)}, "*": 10, "#": 11, "A": 12, "B": 13, "C": 14, "D": 15}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("keys")
    ap.add_argument("out")
    ap.add_argument("--pt", type=int, default=101)
    ap.add_argument("--gap-ms", type=int, default=60)
    args = ap.parse_args()

    seq = random.Random(4733).randrange(0, 30000)
    ssrc = 0x4D544D46
    ts = 160 * 1000
    t_us = 0
    records = []
    for key in args.keys:
        if key == ",":
            t_us += 1_000_000
            ts += 8000
            continue
        event = EVENTS[key.upper()]
        for i in range(6):
            end = i >= 3
            duration = 160 * (min(i, 3) + 1)
            marker = 0x80 if i == 0 else 0
            rtp = struct.pack("!BBHII", 0x80, marker | args.pt, seq & 0xFFFF, ts, ssrc)
            rtp += struct.pack("!BBH", event, (0x80 if end else 0) | 10, duration)
            records.append((t_us, udp_frame(rtp)))
            seq += 1
            t_us += 20_000
        ts += 160 * 6
        t_us += args.gap_ms * 1000
    with open(args.out, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for t, frame in records:
            f.write(struct.pack("<IIII", t // 1_000_000, t % 1_000_000, len(frame), len(frame)))
            f.write(frame)


if __name__ == "__main__":
    main()
