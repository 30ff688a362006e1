//! A real phone end to end: baresip (its own SIP, TLS and SRTP stack) logs an agent in over
//! SIP over TLS with SRTP required, authenticated with Digest as a phone account
//! (`scripts/baresip-tls-srtp.sh`, run against this build).

mod support;

#[test]
fn baresip_logs_in_over_tls_with_srtp_as_a_phone_account() {
    let missing: Vec<&str> = ["baresip", "tmux", "openssl"]
        .into_iter()
        .filter(|t| {
            !std::process::Command::new("sh")
                .args(["-c", &format!("command -v {t}")])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .collect();
    if !missing.is_empty() {
        support::not_checked_loudly(&format!(
            "baresip over TLS + SRTP: {missing:?} not installed"
        ));
        return;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/baresip-tls-srtp.sh");
    let out = std::process::Command::new(script)
        .env("BIN", env!("CARGO_BIN_EXE_agentgw"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("RTP/SAVP") && text.contains("a=crypto:"),
        "{text}"
    );
    assert!(text.contains("outcome=\"logged-in\""), "{text}");
}
