use super::*;

#[test]
fn ulaw_round_trip_is_within_quantisation_error() {
    for s in (-32768i32..=32767).step_by(7) {
        let s = s as i16;
        let back = ulaw_to_linear(linear_to_ulaw(s)) as i32;
        let err = (back - s as i32).abs();
        assert!(err <= (s as i32).abs() / 16 + 8, "{s} -> {back}");
    }
    assert_eq!(linear_to_ulaw(0), ULAW_SILENCE);
}

#[test]
fn alaw_round_trip_is_within_quantisation_error() {
    for s in (-32768i32..=32767).step_by(7) {
        let s = s as i16;
        let back = alaw_to_linear(linear_to_alaw(s)) as i32;
        let err = (back - s as i32).abs();
        assert!(err <= (s as i32).abs() / 16 + 16, "{s} -> {back}");
    }
    assert_eq!(linear_to_alaw(0), ALAW_SILENCE);
}

#[test]
fn decode_of_encode_is_stable() {
    for b in 0..=255u8 {
        assert_eq!(
            linear_to_ulaw(ulaw_to_linear(b)),
            if b == 0x7F { 0xFF } else { b }
        );
        assert_eq!(linear_to_alaw(alaw_to_linear(b)), b);
    }
}
