//! `GET /users/{id}/events`: that user's events as Server-Sent Events, as they commit.

use super::AppState;
use super::auth::Owner;
use super::error::ApiResult;
use crate::engine::events::RecvError;
use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::stream::{self, Stream};
use std::convert::Infallible;

/// The SSE stream of one user's events; a client too slow to keep up gets a `lagged` event.
pub async fn events(
    State(st): State<AppState>,
    Owner { id: uid, .. }: Owner,
) -> ApiResult<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>> {
    st.engine.user(uid)?;
    let rx = st.engine.subscribe_user(uid);
    let s = stream::unfold(rx, |mut rx| async move {
        let event = match rx.recv().await {
            Ok(e) => {
                let data = serde_json::to_string(&*e).unwrap_or_default();
                SseEvent::default().event(e.kind()).data(data)
            }
            Err(RecvError::Lagged(n)) => SseEvent::default().event("lagged").data(n.to_string()),
            Err(RecvError::Closed) => return None,
        };
        Some((Ok(event), rx))
    });
    Ok(Sse::new(s).keep_alive(KeepAlive::default()))
}
