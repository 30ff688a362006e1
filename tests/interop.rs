//! Real phones end to end: baresip (its own SIP and TLS, libre's SRTP) logs an agent in over
//! SIP over TLS with SRTP required, authenticated with Digest as a phone account
//! (`scripts/baresip-tls-srtp.sh`, run against this build); and a phone whose SRTP is
//! libsrtp's (`scripts/libsrtp-phone.py`, Debian's libsrtp2 through python3-pylibsrtp) logs
//! agents in with each suite.

mod support;

use agentgw::media::srtp::Suite;
use agentgw::sdp::SrtpPolicy;

/// What a script printed, once it exited 0 (else its output and errors).
fn succeeded(out: &std::process::Output) -> String {
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let errors = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}{errors}");
    text
}

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
    let text = succeeded(&out);
    assert!(
        text.contains("RTP/SAVP") && text.contains("a=crypto:"),
        "{text}"
    );
    assert!(text.contains("outcome=\"logged-in\""), "{text}");
}

#[tokio::test]
async fn a_libsrtp_phone_logs_in_over_tls_with_each_suite() {
    let pylibsrtp = std::process::Command::new("/usr/bin/python3")
        .args(["-c", "import pylibsrtp"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !pylibsrtp {
        support::not_checked_loudly("libsrtp interop: python3-pylibsrtp not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (gw, tls, ca) = support::start_tls_gateway(dir.path(), |c| {
        c.media.srtp = SrtpPolicy::Require;
    })
    .await;
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca).unwrap();
    let suites = [
        Suite::AesCm128HmacSha1_80,
        Suite::AesCm128HmacSha1_32,
        Suite::AeadAes128Gcm,
    ];
    for (suite, (agent, passcode)) in suites.into_iter().zip(support::DEMO_AGENTS) {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/libsrtp-phone.py");
        let run = tokio::process::Command::new(script)
            .args([&tls.to_string(), ca_file.to_str().unwrap(), suite.name()])
            .args([agent, passcode])
            .output();
        let out = tokio::time::timeout(std::time::Duration::from_secs(40), run)
            .await
            .expect("the libsrtp phone ends within 40 s")
            .unwrap();
        let text = succeeded(&out);
        let crypto = format!("answer_crypto={}", suite.name());
        assert!(
            text.contains("answer=m=audio") && text.contains(&crypto),
            "{text}"
        );
        assert!(
            text.contains("RTP/SAVP") && text.contains("refused=0"),
            "{text}"
        );
    }
    assert_eq!(gw.agents().await, ["1001", "1002", "1003"]);
}
