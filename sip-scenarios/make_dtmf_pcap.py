#!/usr/bin/env python3
"""Writes a pcap of RFC 4733 telephone-event RTP packets for SIPp's play_pcap_audio.

SIPp's own play_dtmf sends events with a fixed payload type that does not match what the
gateway negotiated, so the scenarios replay these pcaps instead. Each key is one event: three
start packets and three end packets sharing one RTP timestamp, 20 ms apart, then a gap.
SIPp rewrites addresses and ports; the payload type, timestamps and timing are kept.

With --inband it writes G.711 µ-law audio instead (payload type 0, a packet every 20 ms): each
key is 60 ms of its two tones at about -8 dBm0 each, then 60 ms of silence, as a phone set to
in-band DTMF sends them.

usage: make_dtmf_pcap.py KEYS OUT.pcap [--pt 101] [--gap-ms 60] [--inband]
  KEYS may contain ',' for a 1 s pause (e.g. "1001#1234#").
"""
import math
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


ROWS = [697.0, 770.0, 852.0, 941.0]
COLS = [1209.0, 1336.0, 1477.0, 1633.0]
KEYPAD = ["123A", "456B", "789C", "*0#D"]


def linear_to_ulaw(sample: int) -> int:
    """G.711 µ-law encoding of one 16-bit sample."""
    sign = 0x80 if sample < 0 else 0
    s = min(abs(sample), 32635) + 0x84
    top = (s >> 7) & 0xFF
    exponent = top.bit_length() - 1 if top else 0
    mantissa = (s >> (exponent + 3)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


def tone_frames(key, n_frames, start):
    """20 ms µ-law frames of the tones of `key` (None: silence)."""
    frames = []
    if key is None:
        return [bytes([0xFF] * 160) for _ in range(n_frames)], start + 160 * n_frames
    row = next(r for r, keys in enumerate(KEYPAD) if key in keys)
    lo, hi = ROWS[row], COLS[KEYPAD[row].index(key)]
    for _ in range(n_frames):
        frame = bytearray()
        for n in range(160):
            t = (start + n) / 8000.0
            v = 9000 * math.sin(2 * math.pi * lo * t) + 9000 * math.sin(2 * math.pi * hi * t)
            frame.append(linear_to_ulaw(int(v)))
        frames.append(bytes(frame))
        start += 160
    return frames, start


def inband(keys, out):
    seq, ssrc, ts, t_us, sample = 1000, 0x494E4241, 8000, 0, 0
    records = []
    frames, sample = tone_frames(None, 10, sample)
    plan = []
    for key in keys:
        if key == ",":
            plan += [None] * 50
        else:
            plan += [key.upper()] * 3 + [None] * 3
    for key in plan:
        fr, sample = tone_frames(key, 1, sample)
        frames += fr
    for i, payload in enumerate(frames):
        marker = 0x80 if i == 0 else 0
        rtp = struct.pack("!BBHII", 0x80, marker | 0, seq & 0xFFFF, ts, ssrc) + payload
        records.append((t_us, udp_frame(rtp)))
        seq += 1
        ts += 160
        t_us += 20_000
    write(out, records)


def write(out, records):
    with open(out, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for t, frame in records:
            f.write(struct.pack("<IIII", t // 1_000_000, t % 1_000_000, len(frame), len(frame)))
            f.write(frame)


EVENTS = {**{str(d): d for d in range(10)}, "*": 10, "#": 11, "A": 12, "B": 13, "C": 14, "D": 15}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("keys")
    ap.add_argument("out")
    ap.add_argument("--pt", type=int, default=101)
    ap.add_argument("--gap-ms", type=int, default=60)
    ap.add_argument("--inband", action="store_true")
    args = ap.parse_args()
    if args.inband:
        inband(args.keys, args.out)
        return

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
    write(args.out, records)


if __name__ == "__main__":
    main()
