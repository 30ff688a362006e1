//! The requests of a call once routed: a dialog's states followed to its end, SIP INFO keys,
//! re-INVITE offers answered by the call's task.

use super::*;

/// Removes a dialog and tells its call it is over.
pub(super) async fn end_dialog(
    dialogs: &DialogLayer,
    routes: &Routes,
    key: &str,
    id: &rsipstack::dialog::DialogId,
) {
    dialogs.remove_dialog(id);
    let route = routes.lock().ok().and_then(|mut r| {
        let route = r.calls.remove(key)?;
        r.before_ack -= route.before_ack.len();
        Some(route)
    });
    if let Some(route) = route {
        // Requests still waiting for an ACK that will not come: the call is gone.
        for tx in route.before_ack {
            spawn_reply(tx, StatusCode::CallTransactionDoesNotExist, vec![]);
        }
        route.events.send(SipEvent::Hangup).await.ok();
    }
}

/// Turns dialog state changes into `SipEvent`s for the call that owns the dialog, and answers
/// every in-dialog request the dialog layer hands up.
pub(super) async fn route_dialog_states(
    mut states: DialogStateReceiver,
    dialogs: Arc<DialogLayer>,
    routes: Routes,
) {
    while let Some(state) = states.recv().await {
        match state {
            DialogState::Confirmed(id, _) => {
                let key = id.to_string();
                let dialog = match dialogs.get_dialog(&id) {
                    Some(rsipstack::dialog::dialog::Dialog::Invite(d)) => Some(d),
                    _ => None,
                };
                let ack_body = dialog
                    .as_ref()
                    .and_then(|d| d.last_remote_ack())
                    .map(|a| a.body().clone())
                    .unwrap_or_default();
                if let Some(s) = route(&routes, &key) {
                    s.try_send(SipEvent::Acked { body: ack_body }).ok();
                }
                if let Some(d) = dialog {
                    hand_on_before_ack(&routes, &key, d);
                }
            }
            DialogState::Updated(id, req, handle) => {
                let sender = route(&routes, &id.to_string());
                tokio::spawn(answer_reoffer(sender, req.body().clone(), handle));
            }
            DialogState::Info(id, req, handle) => {
                let sender = route(&routes, &id.to_string());
                let content_type = req.header_value("Content-Type");
                tokio::spawn(answer_info(
                    sender,
                    content_type,
                    req.body().clone(),
                    handle,
                ));
            }
            DialogState::Options(_, _, handle) => {
                tokio::spawn(async move { handle.reply(StatusCode::OK).await.ok() });
            }
            DialogState::Refer(_, _, handle)
            | DialogState::Message(_, _, handle)
            | DialogState::Notify(_, _, handle)
            | DialogState::Publish(_, _, handle) => {
                tokio::spawn(async move {
                    handle
                        .respond(
                            StatusCode::MethodNotAllowed,
                            Some(vec![Header::Allow(ALLOW.into())]),
                            None,
                        )
                        .await
                        .ok()
                });
            }
            DialogState::Terminated(id, reason) => {
                debug!(dialog = %id, ?reason, "dialog terminated");
                end_dialog(&dialogs, &routes, &id.to_string(), &id).await;
            }
            DialogState::Calling(_)
            | DialogState::Trying(_)
            | DialogState::Early(_, _)
            | DialogState::WaitAck(_, _) => {}
        }
    }
}

/// Hands a key sent as INFO to its call and answers: 200, 415 for a type that is not DTMF,
/// 400 for a DTMF body without a key.
pub(super) async fn answer_info(
    sender: Option<mpsc::Sender<SipEvent>>,
    content_type: Option<String>,
    body: Vec<u8>,
    handle: TransactionHandle,
) {
    match info::parse(content_type.as_deref(), &body) {
        Ok(key) => {
            if let (Some(d), Some(s)) = (key, sender) {
                s.try_send(SipEvent::InfoKey(d)).ok();
            }
            handle.reply(StatusCode::OK).await.ok();
        }
        Err(e @ info::InfoError::Unsupported(_)) => {
            let headers = vec![
                Header::Accept(info::ACCEPTED_TYPES.into()),
                warning(&e.to_string()),
            ];
            handle
                .respond(StatusCode::UnsupportedMediaType, Some(headers), None)
                .await
                .ok();
        }
        Err(e) => {
            handle
                .respond(
                    StatusCode::BadRequest,
                    Some(vec![warning(&e.to_string())]),
                    None,
                )
                .await
                .ok();
        }
    }
}

/// Asks the call for an SDP answer to a re-INVITE / UPDATE and sends it.
pub(super) async fn answer_reoffer(
    sender: Option<mpsc::Sender<SipEvent>>,
    offer: Vec<u8>,
    handle: TransactionHandle,
) {
    let Some(sender) = sender else {
        handle
            .reply(StatusCode::CallTransactionDoesNotExist)
            .await
            .ok();
        return;
    };
    let (answer_tx, answer_rx) = oneshot::channel();
    if sender
        .try_send(SipEvent::Reoffer {
            offer,
            answer: answer_tx,
        })
        .is_err()
    {
        handle
            .respond(
                StatusCode::ServiceUnavailable,
                Some(vec![Header::RetryAfter("1".into())]),
                None,
            )
            .await
            .ok();
        return;
    }
    match tokio::time::timeout(REINVITE_ANSWER_TIMEOUT, answer_rx).await {
        Ok(Ok(Ok(sdp))) => {
            let headers = vec![
                Header::ContentType("application/sdp".into()),
                Header::Allow(ALLOW.into()),
            ];
            handle
                .respond(StatusCode::OK, Some(headers), Some(sdp.into_bytes()))
                .await
                .ok();
        }
        Ok(Ok(Err(e))) => {
            let code = StatusCode::from(e.status());
            handle
                .respond(code, Some(vec![warning(&e.to_string())]), None)
                .await
                .ok();
        }
        _ => {
            handle.reply(StatusCode::ServerInternalError).await.ok();
        }
    }
}
