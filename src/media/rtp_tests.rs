use super::*;

#[test]
fn packets_count_up_and_only_the_first_is_marked() {
    let mut w = RtpWriter::default();
    let a = w.packet(0, &[0xFF; 160], 160).to_vec();
    let b = w.packet(0, &[0xFF; 160], 160).to_vec();
    let (ha, pa) = parse(&a).unwrap();
    let (hb, _) = parse(&b).unwrap();
    assert!(ha.marker && !hb.marker);
    assert_eq!(hb.sequence, ha.sequence.wrapping_add(1));
    assert_eq!(hb.timestamp, ha.timestamp.wrapping_add(160));
    assert_eq!(ha.ssrc, w.ssrc());
    assert_eq!(pa.len(), 160);
}

#[test]
fn latches_once_to_the_real_source() {
    let mut t = RemoteTarget::new("10.0.0.1:4000".parse().unwrap());
    assert!(t.on_packet_from("203.0.113.9:1234".parse().unwrap()));
    assert!(!t.on_packet_from("198.51.100.1:1".parse().unwrap()));
    assert_eq!(t.addr, Some("203.0.113.9:1234".parse().unwrap()));
    let mut hold = RemoteTarget::new("0.0.0.0:4000".parse().unwrap());
    assert_eq!(hold.addr, None);
    hold.on_sdp("10.0.0.1:4000".parse().unwrap());
    assert!(hold.addr.is_some());
}

#[test]
fn a_refresh_keeps_the_latch_and_moved_media_is_followed() {
    let nat: SocketAddr = "203.0.113.9:1234".parse().unwrap();
    let mut t = RemoteTarget::new("10.0.0.1:4000".parse().unwrap());
    t.on_packet_from(nat);
    // A session refresh with the same SDP: still the NAT's address.
    t.on_sdp("10.0.0.1:4000".parse().unwrap());
    assert_eq!(t.addr, Some(nat));
    // The media moved: the new SDP address, and a new latch to the new source.
    t.on_sdp("10.0.0.2:5000".parse().unwrap());
    assert_eq!(t.addr, Some("10.0.0.2:5000".parse().unwrap()));
    let moved: SocketAddr = "203.0.113.10:999".parse().unwrap();
    assert!(t.on_packet_from(moved));
    assert_eq!(t.addr, Some(moved));
}

#[test]
fn strict_rtp_admits_only_the_latched_source_until_the_media_moves() {
    let phone: SocketAddr = "203.0.113.9:1234".parse().unwrap();
    let intruder: SocketAddr = "198.51.100.7:4000".parse().unwrap();
    let mut t = RemoteTarget::new("10.0.0.1:4000".parse().unwrap());
    assert!(t.admit(phone, true), "the first packet latches");
    assert!(t.admit(phone, true));
    assert!(!t.admit(intruder, true), "another source is dropped");
    assert!(
        !t.admit("203.0.113.9:1235".parse().unwrap(), true),
        "another port too"
    );
    assert!(
        t.admit(intruder, false),
        "not strict: everything is the call's"
    );
    assert_eq!(t.addr, Some(phone), "and the latch stays");
    // A refresh keeps the learned source; moved media learns again.
    t.on_sdp("10.0.0.1:4000".parse().unwrap());
    assert!(!t.admit(intruder, true));
    t.on_sdp("10.0.0.2:5000".parse().unwrap());
    assert!(t.admit(intruder, true));
    assert!(!t.admit(phone, true));
    assert_eq!(t.addr, Some(intruder));
}

#[test]
fn allocator_uses_even_ports_in_range() {
    let a = PortAllocator::new(PortRange {
        low: 40001,
        high: 40011,
    });
    let s = a.bind("127.0.0.1".parse().unwrap()).unwrap();
    let p = s.local_addr().unwrap().port();
    assert!(p % 2 == 0 && (40002..=40010).contains(&p), "{p}");
}
