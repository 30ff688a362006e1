#!/usr/bin/env bash
# Installs agentgw under systemd: the binary, the unit, the sysctl for its SIP receive buffer,
# and the example config (kept if one exists). Run as root from the source tree after
# `cargo build --release`.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x target/release/agentgw ] || { echo "build first: cargo build --release" >&2; exit 1; }
id agentgw >/dev/null 2>&1 || useradd --system --home-dir /var/lib/agentgw --shell /usr/sbin/nologin agentgw
install -m 0755 target/release/agentgw /usr/local/bin/agentgw
install -m 0644 systemd/agentgw.service /etc/systemd/system/agentgw.service
install -d -m 0755 /etc/agentgw
[ -e /etc/agentgw/agentgw.toml ] || install -m 0644 systemd/agentgw.toml /etc/agentgw/agentgw.toml
/usr/local/bin/agentgw config check /etc/agentgw/agentgw.toml >/dev/null
# The SIP UDP receive buffer agentgw asks for ([sip] udp_receive_buffer_kib).
install -m 0644 systemd/60-agentgw.conf /etc/sysctl.d/60-agentgw.conf
sysctl -q -p /etc/sysctl.d/60-agentgw.conf || echo "could not set net.core.rmem_max here (a container?): agentgw logs the buffer it got" >&2
systemctl daemon-reload
echo "installed: systemctl enable --now agentgw; journalctl -u agentgw -f"
echo "agents: sudo -u agentgw agentgw --db sqlite:///var/lib/agentgw/agentgw.db agent add 1001 --name 'First Agent' --passcode-stdin"
