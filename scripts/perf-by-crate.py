#!/usr/bin/env python3
"""Splits a perf profile of the gateway by crate: which library each sample's time is in.

    perf record -F 1500 --call-graph dwarf,65528 -t TID -o perf.data -- sleep 8
    perf script -i perf.data -F comm,tid,ip,sym,dso | scripts/perf-by-crate.py [THREAD]

THREAD: only samples of threads whose name starts with it (e.g. tokio-rt-worker). For each
thread kind it prints how many samples it has, then each sample given to the innermost (the
one nearest the leaf) of the crates below found on its stack, split by whether the leaf is
in the kernel, and the share of samples with a frame of each crate anywhere on the stack (an
upper bound of that crate's whole cost, callees included), and the system calls the samples
were in (the outermost __x64_sys_* frame; "-" for samples outside one). Samples whose stack perf could
not unwind show as [unknown] frames; their count is printed, as they make the split less
sure. Without call graphs (no -g) only the leaf is seen.
"""
import collections
import re
import sys

CRATES = ("rsipstack", "agentgw", "sqlx_core", "sqlx_sqlite", "flume", "tokio", "mio",
          "futures", "tracing", "axum", "hyper")


def samples(lines):
    """(thread name, [(symbol, dso), …] leaf first) for each sample of `perf script`."""
    cur = None
    for line in lines:
        if not line.strip():
            if cur:
                yield cur
            cur = None
        elif not line[0].isspace():
            cur = (line.split()[0], [])
        elif cur is not None:
            m = re.match(r"\s*[0-9a-f]+\s+(.*)\s+\((.*)\)\s*$", line)
            if m:
                cur[1].append((m.group(1), m.group(2)))
    if cur:
        yield cur


def crate_of(symbol):
    for c in CRATES:
        if re.search(r"(^|[<\s&(])" + c + r"(::|_)", symbol):
            return c
    return None


def main():
    only = sys.argv[1] if len(sys.argv) > 1 else ""
    total = collections.Counter()
    inner = collections.Counter()
    anywhere = collections.Counter()
    unknown = collections.Counter()
    syscalls = collections.Counter()
    for comm, frames in samples(sys.stdin):
        if not comm.startswith(only):
            continue
        kind = re.sub(r"-?\d+$", "", comm)
        total[kind] += 1
        if any("[unknown]" in s for s, _ in frames):
            unknown[kind] += 1
        crates = [crate_of(s) for s, _ in frames]
        first = next((c for c in crates if c), "(none)")
        leaf = "kernel" if frames and "kernel" in frames[0][1] else "user"
        inner[(kind, first, leaf)] += 1
        for c in set(c for c in crates if c):
            anywhere[(kind, c)] += 1
        calls = [s[len("__x64_sys_"):] for s, _ in frames if s.startswith("__x64_sys_")]
        syscalls[(kind, calls[-1] if calls else "-")] += 1
    for kind, n in total.most_common():
        print(f"{kind}: {n} samples, {unknown[kind]} with an [unknown] frame")
        print("  innermost crate on the stack (leaf in user space / in the kernel):")
        rows = collections.Counter()
        for (k, c, _), v in inner.items():
            if k == kind:
                rows[c] += v
        for c, v in rows.most_common():
            u, k = inner[(kind, c, "user")], inner[(kind, c, "kernel")]
            print(f"    {c:12} {100 * v / n:5.1f}%  ({100 * u / n:.1f}% / {100 * k / n:.1f}%)")
        print("  crate anywhere on the stack:")
        for (k, c), v in sorted(anywhere.items(), key=lambda x: -x[1]):
            if k == kind:
                print(f"    {c:12} {100 * v / n:5.1f}%")
        print("  system calls:")
        mine = [(c, v) for (k, c), v in syscalls.items() if k == kind and v * 200 >= n]
        for c, v in sorted(mine, key=lambda x: -x[1])[:12]:
            print(f"    {c:16} {100 * v / n:5.1f}%")


if __name__ == "__main__":
    main()
