//! The checks of RFC 3261 a request passes before the SIP stack parses it: what the stack
//! would drop in silence or take wrongly gets its answer here, statelessly, with the status
//! of RFC 3261 (400 naming the fault, 505, 501, 416, 420, 415, 513); a valid request the
//! stack's parser cannot read as it is (folded header lines, octets that are not UTF-8) is
//! passed on rewritten in the form it reads. Pure: bytes in, a verdict out.

use std::borrow::Cow;
use std::fmt::Write as _;

/// What to do with a received message.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Valid (or a response, or a keepalive): the stack parses it.
    Pass,
    /// Valid, but to be parsed in this normalized form (same meaning).
    Rewrite(Vec<u8>),
    /// Invalid: send this answer back, process nothing.
    Answer { status: u16, answer: Vec<u8> },
    /// Invalid and not to be answered (an ACK, or not SIP at all).
    Drop(&'static str),
}

/// The methods agentgw serves (sent in Allow).
pub const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO";

/// Methods of the SIP standards: answered by the stack (405 with Allow where agentgw does not
/// serve them). Any other method is an extension agentgw does not know: 501.
const KNOWN_METHODS: [&str; 14] = [
    "INVITE",
    "ACK",
    "BYE",
    "CANCEL",
    "OPTIONS",
    "INFO",
    "REGISTER",
    "PRACK",
    "UPDATE",
    "SUBSCRIBE",
    "NOTIFY",
    "REFER",
    "MESSAGE",
    "PUBLISH",
];

/// URI schemes a Request-URI may have here; any other is 416.
const SCHEMES: [&str; 3] = ["sip", "sips", "tel"];

/// Option tags agentgw supports in Require (none: `timer` and `100rel` are not served).
const SUPPORTED_OPTIONS: [&str; 0] = [];

/// Headers that appear once at most.
const SINGLE: [&str; 7] = [
    "call-id",
    "cseq",
    "from",
    "to",
    "content-length",
    "content-type",
    "max-forwards",
];

/// A header as received: its name in long form, lower case, when it is one the checks read
/// (else empty), the name as sent, and its value (unfolded).
struct Field<'a> {
    name: &'static str,
    raw_name: &'a str,
    value: Cow<'a, str>,
}

/// Checks `raw`, received over a stream (`stream`: TCP/TLS, where the framing already used
/// Content-Length) or as a datagram. `max_bytes`: larger messages are answered 513.
pub fn check(raw: &[u8], max_bytes: usize, stream: bool) -> Verdict {
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Verdict::Pass; // keepalives
    }
    if raw.starts_with(b"SIP/") {
        return Verdict::Pass; // responses: matched to our transactions by the stack
    }
    let (head_end, body_start) = match find(raw, b"\r\n\r\n") {
        Some(i) => (i, i + 4),
        None => match find(raw, b"\n\n") {
            Some(i) => (i, i + 2),
            None => (raw.len(), raw.len()),
        },
    };
    let head_bytes = &raw[..head_end];
    let body = &raw[body_start..];
    let (head, utf8) = match std::str::from_utf8(head_bytes) {
        Ok(text) => (Cow::Borrowed(text), true),
        Err(_) => (String::from_utf8_lossy(head_bytes), false),
    };
    let mut lines = head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let request_line = lines.next().unwrap_or_default();
    let mut fields: Vec<Field> = Vec::new();
    let mut folded = false;
    let mut bad_line: Option<String> = None;
    for line in lines {
        if line.starts_with([' ', '\t']) {
            match fields.last_mut() {
                Some(f) => {
                    folded = true;
                    let v = f.value.to_mut();
                    v.push(' ');
                    v.push_str(line.trim());
                }
                None => bad_line = bad_line.or(Some(line.to_string())),
            }
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            bad_line = bad_line.or(Some(line.to_string()));
            continue;
        };
        let name = name.trim_end_matches([' ', '\t']);
        if name.is_empty() || !name.bytes().all(is_token) {
            bad_line = bad_line.or(Some(line.to_string()));
            continue;
        }
        fields.push(Field {
            name: long_name(name),
            raw_name: name,
            value: Cow::Borrowed(value.trim()),
        });
    }
    let mut parts = request_line.split(' ');
    let method = parts.next().unwrap_or_default();
    let is_ack = method == "ACK";
    let answer = |status: u16, reason: &str, extra: &[(&str, String)]| {
        if is_ack {
            return Verdict::Drop("an invalid ACK");
        }
        Verdict::Answer {
            status,
            answer: response(status, reason, &fields, extra),
        }
    };
    let bad = |why: String| answer(400, &why, &[]);

    // The Request-Line: Method SP Request-URI SP SIP-Version, one space each.
    let (uri, version) = match (parts.next(), parts.next(), parts.next()) {
        (Some(uri), Some(version), None) if !method.is_empty() && !uri.is_empty() => (uri, version),
        _ => {
            if !request_line.contains("SIP/") {
                return Verdict::Drop("not a SIP message");
            }
            return bad("Malformed Request-Line".into());
        }
    };
    if !method.bytes().all(is_token) {
        return bad("Malformed method in the Request-Line".into());
    }
    if !version.eq_ignore_ascii_case("SIP/2.0") {
        if version.len() > 4
            && version
                .get(..4)
                .is_some_and(|v| v.eq_ignore_ascii_case("SIP/"))
        {
            return answer(505, "Version Not Supported", &[]);
        }
        return bad("Malformed SIP-Version in the Request-Line".into());
    }
    if let Some(line) = bad_line {
        let shown: String = line.chars().take(40).collect();
        return bad(format!("Malformed header line: {shown}"));
    }
    if head_end == raw.len() && !raw.ends_with(b"\n") {
        return bad("No empty line after the headers".into());
    }

    // The headers every request has (RFC 3261 §8.1.1), each once.
    for required in ["via", "from", "to", "call-id", "cseq"] {
        if !fields.iter().any(|f| f.name == required) {
            return bad(format!("Missing {} header", display_name(required)));
        }
    }
    for single in SINGLE {
        if fields.iter().filter(|f| f.name == single).count() > 1 {
            return bad(format!("Duplicate {} header", display_name(single)));
        }
    }
    let value = |name: &str| {
        fields
            .iter()
            .find(|f| f.name == name)
            .map(|f| f.value.as_ref())
            .unwrap_or_default()
    };
    let cseq_ok = value("cseq").split_once([' ', '\t']).is_some_and(|(n, m)| {
        n.len() <= 10
            && n.bytes().all(|b| b.is_ascii_digit())
            && n.parse::<u64>().is_ok_and(|n| n < 1 << 31)
            && m.trim() == method
    });
    if !cseq_ok {
        return bad("Malformed CSeq header".into());
    }
    if value("call-id").is_empty() || value("call-id").contains([' ', '\t']) {
        return bad("Malformed Call-ID header".into());
    }
    for name in ["from", "to"] {
        if let Err(why) = name_addr(value(name)) {
            return bad(format!("Malformed {} header: {why}", display_name(name)));
        }
    }
    if let Some(mf) = fields.iter().find(|f| f.name == "max-forwards") {
        if mf.value.is_empty()
            || mf.value.len() > 3
            || !mf.value.bytes().all(|b| b.is_ascii_digit())
        {
            return bad("Malformed Max-Forwards header".into());
        }
    }

    // The body as the Content-Length says (RFC 3261 §18.3): on a datagram, more bytes than
    // it says are dropped, fewer are an error.
    let length = fields.iter().find(|f| f.name == "content-length");
    let body_len = match length {
        Some(f) => {
            let digits: &str = &f.value;
            if digits.is_empty() || digits.len() > 10 || !digits.bytes().all(|b| b.is_ascii_digit())
            {
                return bad("Malformed Content-Length header".into());
            }
            let n: usize = digits.parse().unwrap_or(usize::MAX);
            if body_start.saturating_add(n) > max_bytes {
                return answer(513, "Message Too Large", &[]);
            }
            if n > body.len() {
                return bad("Content-Length larger than the body".into());
            }
            n
        }
        None if stream => return bad("Missing Content-Length header".into()),
        None => body.len(),
    };
    if raw.len() > max_bytes {
        return answer(513, "Message Too Large", &[]);
    }

    // Method, Request-URI, extensions, body: RFC 3261 §8.2.1 to §8.2.3.
    if !KNOWN_METHODS.contains(&method) {
        return answer(501, "Not Implemented", &[("Allow", ALLOW.into())]);
    }
    if uri.contains(['<', '>', '"']) {
        return bad("Malformed Request-URI".into());
    }
    let Some((scheme, rest)) = uri.split_once(':') else {
        return bad("Malformed Request-URI".into());
    };
    if !SCHEMES.contains(&scheme.to_ascii_lowercase().as_str()) {
        return answer(416, "Unsupported URI Scheme", &[]);
    }
    if scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips") {
        let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
        let host = host.split([';', '?']).next().unwrap_or_default();
        if host.is_empty() || host.starts_with(':') {
            return bad("Request-URI without a host".into());
        }
    }
    if method != "CANCEL" {
        let unsupported: Vec<&str> = fields
            .iter()
            .filter(|f| f.name == "require" || f.name == "proxy-require")
            .flat_map(|f| f.value.split(','))
            .map(str::trim)
            .filter(|t| !t.is_empty() && !SUPPORTED_OPTIONS.contains(t))
            .collect();
        if !unsupported.is_empty() {
            return answer(
                420,
                "Bad Extension",
                &[("Unsupported", unsupported.join(", "))],
            );
        }
    }
    if method == "INVITE" && body_len > 0 {
        let encoding = value("content-encoding");
        if !encoding.is_empty() && !encoding.eq_ignore_ascii_case("identity") {
            return answer(
                415,
                "Unsupported Media Type",
                &[("Accept-Encoding", "identity".into())],
            );
        }
        let kind = value("content-type")
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        if kind != "application/sdp" {
            return answer(
                415,
                "Unsupported Media Type",
                &[("Accept", "application/sdp".into())],
            );
        }
    }

    // An RFC 2543 peer sends no From tag, which the stack needs to match transactions and
    // dialogs: it gets one derived from the Call-ID and From, the same in each of its requests
    // of the call (its ACK and BYE too), so its dialog is found again.
    let untagged = fields
        .iter()
        .position(|f| f.name == "from" && !has_tag(&f.value));
    if let Some(i) = untagged {
        let tag = rfc2543_tag(value("call-id"), &fields[i].value);
        fields[i].value.to_mut().push_str(&format!(";tag={tag}"));
    }

    // Header parameters written with spaces around `;` and `=` (RFC 3261's SEMI and EQUAL
    // allow them: `;tag = x`), which the stack does not read: written without.
    let mut spaced = false;
    for f in fields.iter_mut() {
        if matches!(f.name, "from" | "to" | "via" | "contact") {
            if let Some(compact) = compact_params(&f.value) {
                f.value = Cow::Owned(compact);
                spaced = true;
            }
        }
    }

    if folded || !utf8 || spaced || untagged.is_some() {
        // The same request in the form the stack reads: one line per header, UTF-8.
        let mut out = String::with_capacity(raw.len());
        out.push_str(request_line);
        out.push_str("\r\n");
        for f in &fields {
            let _ = write!(out, "{}: {}\r\n", f.raw_name, f.value);
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&body[..body_len]);
        return Verdict::Rewrite(bytes);
    }
    Verdict::Pass
}

/// `value` without the spaces around `;` and `=` outside quotes and `<…>`, when it has any.
fn compact_params(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = String::with_capacity(value.len());
    let (mut quoted, mut angle, mut escaped, mut changed) = (false, false, false, false);
    for (i, c) in value.char_indices() {
        if quoted {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => quoted = false,
                _ => {}
            }
        } else if c == '"' {
            quoted = true;
        } else if c == '<' {
            angle = true;
        } else if c == '>' {
            angle = false;
        } else if !angle && (c == ' ' || c == '\t') {
            // Spaces just before or after a `;` or `=` (skipping other spaces).
            let next = bytes[i..].iter().find(|b| !matches!(b, b' ' | b'\t'));
            let prev = out.trim_end_matches([' ', '\t']).chars().last();
            if matches!(next, Some(b';' | b'=')) || matches!(prev, Some(';' | '=')) {
                changed = true;
                continue;
            }
        }
        out.push(c);
    }
    changed.then_some(out)
}

/// Checks a From or To value: a name-addr (`"Name" <uri>;params`) or an addr-spec
/// (`uri;params`), its quotes and angle brackets balanced.
fn name_addr(value: &str) -> Result<(), &'static str> {
    if value.is_empty() {
        return Err("empty");
    }
    let mut in_quotes = false;
    let mut escaped = false;
    let mut angle = 0;
    let mut seen_uri = false;
    for c in value.chars() {
        if in_quotes {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_quotes = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_quotes = true,
            '<' if angle == 0 && !seen_uri => angle = 1,
            '<' => return Err("unbalanced <>"),
            '>' if angle == 1 => {
                angle = 0;
                seen_uri = true;
            }
            '>' => return Err("unbalanced <>"),
            _ => {}
        }
    }
    if in_quotes {
        return Err("unbalanced quotes");
    }
    if angle != 0 {
        return Err("unbalanced <>");
    }
    if !value.contains(':') {
        return Err("no URI");
    }
    Ok(())
}

/// A stateless answer to the request whose headers are `fields`: its Vias, From, To (with a
/// tag derived from the request), Call-ID and CSeq, a Warning naming the fault on a 400.
fn response(status: u16, reason: &str, fields: &[Field], extra: &[(&str, String)]) -> Vec<u8> {
    let mut out = format!("SIP/2.0 {status} {}\r\n", phrase(reason));
    for f in fields.iter().filter(|f| f.name == "via") {
        let _ = write!(out, "Via: {}\r\n", f.value);
    }
    let get = |name: &str| fields.iter().find(|f| f.name == name).map(|f| &f.value);
    if let Some(from) = get("from") {
        let _ = write!(out, "From: {from}\r\n");
    }
    if let Some(to) = get("to") {
        if has_tag(to) {
            let _ = write!(out, "To: {to}\r\n");
        } else {
            let _ = write!(out, "To: {to};tag={}\r\n", stateless_tag(fields));
        }
    }
    for (name, header) in [("call-id", "Call-ID"), ("cseq", "CSeq")] {
        if let Some(v) = get(name) {
            let _ = write!(out, "{header}: {v}\r\n");
        }
    }
    for (name, value) in extra {
        let _ = write!(out, "{name}: {value}\r\n");
    }
    if status == 400 {
        let _ = write!(
            out,
            "Warning: 399 agentgw \"{}\"\r\n",
            reason.replace('"', "'")
        );
    }
    let _ = write!(
        out,
        "Server: agentgw/{}\r\nContent-Length: 0\r\n\r\n",
        env!("CARGO_PKG_VERSION")
    );
    out.into_bytes()
}

/// A reason phrase: the words given, without control characters.
fn phrase(reason: &str) -> String {
    let p: String = reason
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(80)
        .collect();
    if p.is_empty() {
        "Bad Request".into()
    } else {
        p
    }
}

fn has_tag(value: &str) -> bool {
    // The tag is a parameter after the URI (after `>` in a name-addr).
    let params = value.rsplit_once('>').map_or(value, |(_, p)| p);
    params
        .split(';')
        .skip(usize::from(!value.contains('>')))
        .any(|p| {
            p.trim()
                .split('=')
                .next()
                .is_some_and(|n| n.trim().eq_ignore_ascii_case("tag"))
        })
}

/// A To tag the same for every retransmission of a request (RFC 3261 §8.2.6.2).
fn stateless_tag(fields: &[Field]) -> String {
    let parts: Vec<&str> = fields
        .iter()
        .filter(|f| matches!(f.name, "call-id" | "from" | "cseq"))
        .map(|f| f.value.as_ref())
        .collect();
    format!("sl{}", keyed_hash(parts))
}

/// The From tag given to an RFC 2543 peer's requests of one call.
fn rfc2543_tag(call_id: &str, from: &str) -> String {
    format!("rfc2543-{}", keyed_hash((call_id, from)))
}

/// 16 hex digits hashing `parts` with a key of this process: the same for the same parts,
/// not foreseeable from outside.
pub(super) fn keyed_hash(parts: impl std::hash::Hash) -> String {
    use std::hash::BuildHasher;
    static KEY: std::sync::OnceLock<std::hash::RandomState> = std::sync::OnceLock::new();
    format!(
        "{:016x}",
        KEY.get_or_init(std::hash::RandomState::new).hash_one(parts)
    )
}

/// The headers the checks read: the long name lower case, its compact form (RFC 3261
/// §7.3.3), and how it is written.
const NAMES: [(&str, &str, &str); 11] = [
    ("via", "v", "Via"),
    ("from", "f", "From"),
    ("to", "t", "To"),
    ("call-id", "i", "Call-ID"),
    ("cseq", "", "CSeq"),
    ("content-length", "l", "Content-Length"),
    ("content-type", "c", "Content-Type"),
    ("content-encoding", "e", "Content-Encoding"),
    ("max-forwards", "", "Max-Forwards"),
    ("require", "", "Require"),
    ("proxy-require", "", "Proxy-Require"),
];

/// The long form, lower case, of a header name the checks read (else empty).
fn long_name(name: &str) -> &'static str {
    NAMES
        .iter()
        .find(|(long, short, _)| {
            name.eq_ignore_ascii_case(long)
                || (!short.is_empty() && name.eq_ignore_ascii_case(short))
        })
        .map_or("", |(long, _, _)| long)
}

/// How the header `long` (a long name from `NAMES`) is written.
fn display_name(long: &str) -> &'static str {
    NAMES
        .iter()
        .find(|(l, _, _)| *l == long)
        .map_or("a", |(_, _, written)| written)
}

/// RFC 3261's token characters.
fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

/// Where `needle` (a line end, `\r\n\r\n` or `\n\n`) first is in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let last = *needle.last()?;
    let mut from = needle.len() - 1;
    while let Some(i) = hay.get(from..)?.iter().position(|&b| b == last) {
        let end = from + i + 1;
        if hay[end - needle.len()..end] == *needle {
            return Some(end - needle.len());
        }
        from = end;
    }
    None
}

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
