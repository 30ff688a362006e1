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
