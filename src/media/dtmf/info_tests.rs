use super::*;

fn d(c: char) -> Option<Digit> {
    Digit::from_char(c)
}

#[test]
fn dtmf_relay_in_every_shape_phones_send() {
    let ct = Some("application/dtmf-relay");
    assert_eq!(parse(ct, b"Signal=1\r\nDuration=160\r\n"), Ok(d('1')));
    assert_eq!(parse(ct, b"Signal=1\r\nDuration=160"), Ok(d('1')));
    assert_eq!(parse(ct, b"Duration=250\nSignal= #\n"), Ok(d('#')));
    assert_eq!(parse(ct, b"signal=*"), Ok(d('*')));
    assert_eq!(parse(ct, b"Signal=10\r\nDuration=100\r\n"), Ok(d('*')));
    assert_eq!(parse(ct, b"Signal=11\r\nDuration=100\r\n"), Ok(d('#')));
    assert_eq!(parse(ct, b"Signal=d\r\n"), Ok(d('D')));
    assert_eq!(
        parse(Some("Application/DTMF-Relay; charset=utf-8"), b"Signal=7"),
        Ok(d('7'))
    );
}

#[test]
fn bare_dtmf_body() {
    assert_eq!(parse(Some("application/dtmf"), b"5"), Ok(d('5')));
    assert_eq!(parse(Some("application/dtmf"), b"11\r\n"), Ok(d('#')));
}

#[test]
fn other_types_are_unsupported_and_bad_bodies_malformed() {
    assert!(matches!(
        parse(Some("application/media_control+xml"), b"<x/>"),
        Err(InfoError::Unsupported(_))
    ));
    assert!(matches!(
        parse(Some("application/dtmf-relay"), b"Duration=160"),
        Err(InfoError::Malformed(_))
    ));
    assert!(matches!(
        parse(Some("application/dtmf-relay"), b"Signal=X"),
        Err(InfoError::Malformed(_))
    ));
    assert!(matches!(
        parse(Some("application/dtmf-relay"), b"Signal=99"),
        Err(InfoError::Malformed(_))
    ));
    assert!(matches!(
        parse(Some("application/dtmf"), b""),
        Err(InfoError::Malformed(_))
    ));
}

#[test]
fn an_info_without_body_is_a_keepalive() {
    assert_eq!(parse(None, b""), Ok(None));
    assert_eq!(parse(None, b"\r\n"), Ok(None));
}
