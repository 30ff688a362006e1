//! Stateless answers: sent once with a To tag derived from the request, nothing kept.

use super::*;

pub(super) fn warning(text: &str) -> Header {
    let text = text.replace('"', "'");
    Header::Warning(format!("399 agentgw \"{text}\"").into())
}

/// Answers a request statelessly (every request outside a call, and the refusals of requests
/// in one), as Kamailio's `sl_send_reply` and PJSIP's `pjsip_endpt_respond_stateless` refuse
/// calls: the answer is sent once and the transaction let go unanswered, so the SIP stack
/// keeps nothing of it. A retransmission of the request is a new request, answered again
/// (the same To tag: it is derived from the request), and the ACK of a refused INVITE
/// matches nothing and is dropped.
///
/// Kept by the SIP stack instead, every answer would cost ~1.8 KiB for 32 s (64×T1), and a
/// refused INVITE over UDP would be sent again on a timer until an ACK (RFC 3261 Timer G,
/// ~11 times in 32 s): a UDP source can be forged, so each forged INVITE would make a stream
/// of answers at someone else. rsipstack also files each refused INVITE in a table that it
/// scans whole when any finished transaction expires, so n refusals within 32 s cost n² (40,000
/// of them: 4 s of CPU; see BENCHMARKS). A caller that misses the answer retransmits its
/// request (Timer A/E) and is answered again.
pub(super) fn spawn_reply(tx: Transaction, code: StatusCode, headers: Vec<Header>) {
    if tx.original.method == Method::Ack {
        return;
    }
    tokio::spawn(async move {
        let mut request = tx.original.clone();
        if !matches!(code.kind(), rsipstack::sip::StatusCodeKind::Provisional) {
            if let Ok(to) = request.to_header() {
                if to.tag().ok().flatten().is_none() {
                    let tagged = to.clone().with_tag(stateless_tag(&request).into());
                    request.headers.unique_push(tagged.into());
                }
            }
        }
        let mut response = tx.endpoint_inner.make_response(&request, code, None);
        response.headers.extend(headers);
        let sent = match tx.connection.as_ref() {
            Some(c) => c.send(response.into(), tx.destination.as_ref()).await,
            None => Ok(()),
        };
        if let Err(e) = sent {
            debug!(error = %e, "reply not sent");
        }
        // `tx` is dropped unanswered here: the SIP stack forgets it.
    });
}

/// A To tag for a stateless answer: the same for a request and its retransmissions (same
/// Call-ID, From tag and branch), unguessable from outside (a key chosen at start).
pub(super) fn stateless_tag(request: &rsipstack::sip::Request) -> String {
    let call_id = request.call_id_header().map(|c| c.value().to_string()).ok();
    let from_tag = request
        .from_header()
        .ok()
        .and_then(|f| f.tag().ok().flatten())
        .map(|t| t.to_string());
    let branch = request
        .via_header()
        .ok()
        .and_then(|v| rsipstack::sip::ToTypedHeader::typed(v).ok())
        .and_then(|v| v.branch().map(|b| b.to_string()));
    format!("sl{}", validate::keyed_hash((call_id, from_tag, branch)))
}

pub(super) async fn answer_if_unanswered(tx: &mut Transaction, code: StatusCode) {
    if tx.last_response.is_none() && tx.original.method != Method::Ack {
        tx.reply(code).await.ok();
    }
}

/// Runs a server transaction to its end so its timers and retransmissions work.
pub(super) async fn drain(mut tx: Transaction) {
    let limit = tokio::time::sleep(Duration::from_secs(64));
    tokio::pin!(limit);
    loop {
        tokio::select! {
            m = tx.receive() => if m.is_none() { break },
            _ = &mut limit => break,
        }
    }
}
