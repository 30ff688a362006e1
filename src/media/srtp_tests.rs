//! SRTP by RFC 3711's test vectors (key derivation, AES-CM key stream), and each suite's
//! packets through a sender and a receiver: tampering, replays, reordering, rollover.

use super::*;

fn unhex(s: &str) -> Vec<u8> {
    crate::hex::decode(s).expect("hex")
}

#[test]
fn session_keys_match_rfc_3711_b3() {
    let inline = format!(
        "inline:{}",
        base64::engine::general_purpose::STANDARD.encode(unhex(
            "E1F97A0D3E018BE0D64FA32C06DE41390EC675AD498AFEEBB6960B3AABE6"
        ))
    );
    let master = MasterKey::from_inline(Suite::AesCm128HmacSha1_80, &inline).unwrap();
    let mut k = [0u8; 16];
    master.derive(0, &mut k);
    assert_eq!(k.to_vec(), unhex("C61E7A93744F39EE10734AFE3FF7A087"));
    let mut s = [0u8; 14];
    master.derive(2, &mut s);
    assert_eq!(s.to_vec(), unhex("30CBBC08863D8C85D49DB34A9AE1"));
    let mut a = [0u8; 20];
    master.derive(1, &mut a);
    assert_eq!(a[..16].to_vec(), unhex("CEBE321F6FF7716B6FD4AB49AF256A15"));
    assert_eq!(master.to_inline(), inline);
}

#[test]
fn the_aes_cm_key_stream_matches_rfc_3711_b2() {
    let cipher = Aes128::new_from_slice(&unhex("2B7E151628AED2A6ABF7158809CF4F3C")).unwrap();
    let salt: [u8; 14] = unhex("F0F1F2F3F4F5F6F7F8F9FAFBFCFD").try_into().unwrap();
    let mut stream = [0u8; 48];
    cm_apply(&cipher, &salt, 0, 0, &mut stream);
    assert_eq!(
        stream.to_vec(),
        unhex(
            "E03EAD0935C95E80E166B16DD92B4EB4D23513162B02D0F72A43A2FE4A5F97AB\
             41E95B3BB0A2E8DD477901E4FCA894C0"
        )
    );
}

/// An RTP packet of `seq` with a 160-byte payload, in a buffer with room for any tag.
fn packet(seq: u16) -> ([u8; 256], usize) {
    let mut buf = [0u8; 256];
    buf[0] = 0x80;
    buf[1] = 0;
    buf[2..4].copy_from_slice(&seq.to_be_bytes());
    buf[4..8].copy_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    buf[8..12].copy_from_slice(&0x1234_5678u32.to_be_bytes());
    for (i, b) in buf[12..172].iter_mut().enumerate() {
        *b = i as u8;
    }
    (buf, 172)
}

fn pair(suite: Suite) -> (Sender, Receiver) {
    let key = MasterKey::generate(suite);
    let key = MasterKey::from_inline(suite, &key.to_inline()).unwrap();
    (Sender::new(&key), Receiver::new(&key))
}

#[test]
fn every_suite_round_trips_and_refuses_tampering_and_replays() {
    for suite in Suite::ALL {
        let (mut tx, mut rx) = pair(suite);
        let (plain, len) = packet(7);
        let mut buf = plain;
        let n = tx.protect(&mut buf, len).unwrap();
        assert_eq!(n, len + suite.overhead());
        assert_ne!(buf[12..len], plain[12..len], "{suite:?}: payload encrypted");
        assert_eq!(buf[..12], plain[..12], "{suite:?}: header in clear");
        let sent = buf;
        let mut tampered = sent;
        tampered[40] ^= 1;
        assert_eq!(
            rx.unprotect(&mut tampered[..n]),
            Err(Refused::Forged),
            "{suite:?}"
        );
        let mut ok = sent;
        assert_eq!(rx.unprotect(&mut ok[..n]), Ok(len), "{suite:?}");
        assert_eq!(ok[..len], plain[..len], "{suite:?}");
        let mut again = sent;
        assert_eq!(
            rx.unprotect(&mut again[..n]),
            Err(Refused::Replayed),
            "{suite:?}"
        );
        assert_eq!(rx.unprotect(&mut [0x80u8; 10][..]), Err(Refused::Malformed));
    }
}

#[test]
fn late_packets_within_the_window_pass_and_the_rollover_counter_follows() {
    let (mut tx, mut rx) = pair(Suite::AesCm128HmacSha1_32);
    let mut sent = Vec::new();
    for seq in [65_530u16, 65_531, 65_532, 65_533, 65_534, 65_535, 0, 1, 2] {
        let (mut buf, len) = packet(seq);
        let n = tx.protect(&mut buf, len).unwrap();
        sent.push((buf, n, seq));
    }
    // In order but for 65,533, which comes after the rollover.
    let late = sent.remove(3);
    for (mut buf, n, seq) in sent.into_iter().chain([late]) {
        let (plain, len) = packet(seq);
        assert_eq!(rx.unprotect(&mut buf[..n]), Ok(len), "seq {seq}");
        assert_eq!(buf[..len], plain[..len], "seq {seq}");
    }
    assert_eq!(rx.roc, 1);
    // Far older than the window: refused.
    let (mut tx2, _) = (tx.clone(), ());
    tx2.roc = 0;
    tx2.last_seq = None;
    let (mut buf, len) = packet(65_000);
    let n = tx2.protect(&mut buf, len).unwrap();
    assert_eq!(rx.unprotect(&mut buf[..n]), Err(Refused::Replayed));
}

#[test]
fn inline_keys_of_the_wrong_length_or_with_an_mki_are_refused() {
    let gcm = MasterKey::generate(Suite::AeadAes128Gcm).to_inline();
    assert!(MasterKey::from_inline(Suite::AeadAes128Gcm, &gcm).is_some());
    assert!(MasterKey::from_inline(Suite::AesCm128HmacSha1_80, &gcm).is_none());
    let cm = MasterKey::generate(Suite::AesCm128HmacSha1_80).to_inline();
    assert!(MasterKey::from_inline(Suite::AesCm128HmacSha1_80, &format!("{cm}|2^20")).is_some());
    assert!(
        MasterKey::from_inline(Suite::AesCm128HmacSha1_80, &format!("{cm}|2^20|1:4")).is_none()
    );
    assert!(MasterKey::from_inline(Suite::AesCm128HmacSha1_80, "inline:!!!").is_none());
    assert!(!format!("{:?}", MasterKey::generate(Suite::AeadAes128Gcm)).contains("inline"));
}

/// RFC 7714 §16.1.1: AEAD_AES_128_GCM with the published session key and salt.
#[test]
fn gcm_packets_match_rfc_7714_16_1() {
    let keys = Keys::Gcm {
        aead: Aes128Gcm::new_from_slice(&unhex("000102030405060708090a0b0c0d0e0f")).unwrap(),
        salt: unhex("517569642070726f2071756f").try_into().unwrap(),
    };
    let plain = unhex(
        "8040f17b8041f8d35501a0b247616c6c696120657374206f6d6e697320646976\
         69736120696e207061727465732074726573",
    );
    let protected = unhex(
        "8040f17b8041f8d35501a0b2f24de3a3fb34de6cacba861c9d7e4bcabe633bd5\
         0d294e6f42a5f47a51c7d19b36de3adf8833899d7f27beb16a9152cf765ee4390cce",
    );
    let mut tx = Sender {
        keys: keys.clone(),
        suite: Suite::AeadAes128Gcm,
        roc: 0,
        last_seq: None,
    };
    let mut buf = [0u8; 128];
    buf[..plain.len()].copy_from_slice(&plain);
    let n = tx.protect(&mut buf, plain.len()).unwrap();
    assert_eq!(buf[..n].to_vec(), protected);
    let mut rx = Receiver {
        keys,
        suite: Suite::AeadAes128Gcm,
        roc: 0,
        s_l: None,
        window: 0,
    };
    let mut wire = protected.clone();
    assert_eq!(rx.unprotect(&mut wire), Ok(plain.len()));
    assert_eq!(wire[..plain.len()], plain[..]);
}
