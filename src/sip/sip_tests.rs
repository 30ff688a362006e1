use super::*;

#[test]
fn identities_asserted_by_pbxs() {
    assert_eq!(
        identity_of("\"Desk 7\" <sip:2007@pbx.example:5060;user=phone>").as_deref(),
        Some("2007@pbx.example")
    );
    assert_eq!(
        identity_of("<sip:2007@10.0.0.1>").as_deref(),
        Some("2007@10.0.0.1")
    );
    assert_eq!(
        identity_of("sip:alice@[2001:db8::1]:5060").as_deref(),
        Some("alice@[2001:db8::1]")
    );
    assert_eq!(
        identity_of("<tel:+15551230007>").as_deref(),
        Some("+15551230007")
    );
    assert_eq!(identity_of("garbage"), None);
}
