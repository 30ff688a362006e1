use super::*;

#[test]
fn event_codes_round_trip() {
    for code in 0..16 {
        assert_eq!(Digit::from_event(code).unwrap().event_code(), code);
    }
    assert_eq!(Digit::from_event(11), Digit::from_char('#'));
    assert_eq!(Digit::from_event(16), None);
    assert_eq!(Digit::from_char('x'), None);
}

#[test]
fn the_same_press_from_two_methods_counts_once() {
    let t0 = Instant::now();
    let ms = |n| t0 + Duration::from_millis(n);
    let one = Digit::from_char('1').unwrap();
    let two = Digit::from_char('2').unwrap();
    let mut m = KeyMerger::default();
    assert!(m.accept(one, DtmfMethod::Rfc4733, ms(0)));
    assert!(!m.accept(one, DtmfMethod::Info, ms(10)));
    // The same key pressed again, the methods arriving in the other order.
    assert!(!m.accept(one, DtmfMethod::Info, ms(150)));
    assert!(m.accept(one, DtmfMethod::Rfc4733, ms(160)));
    // A different key from another method is a new press.
    assert!(m.accept(two, DtmfMethod::Inband, ms(200)));
    // One method repeating a key is two presses (it dedups its own packets).
    assert!(m.accept(two, DtmfMethod::Inband, ms(300)));
    // Long after, another method's report of the same key is a new press.
    assert!(m.accept(two, DtmfMethod::Info, ms(900)));
}

#[test]
fn methods_parse_from_config_words() {
    assert_eq!("info".parse::<DtmfMethod>(), Ok(DtmfMethod::Info));
    assert!("sip-info"
        .parse::<DtmfMethod>()
        .unwrap_err()
        .contains("rfc4733, info, inband"));
}
