//! The frames that follow the first answer of `logs --follow` and `audit --follow`: a
//! broadcast queue turned into a stream of [`Response`]s, with a follower that fell behind told
//! how much it missed ([`Response::LogGap`]).

use futures::StreamExt;
use futures::stream::BoxStream;
use mcpd_protocol::{LogGap, Response};
use tokio::sync::broadcast;

/// Frames for the connection to write, one by one, until the stream ends.
pub(in crate::control) type Frames = BoxStream<'static, Response>;

/// Every item of `queue` that `frame` turns into a frame (`None`: skipped), until the queue
/// closes. A follower too slow for the queue gets a `LogGap` with the number of items lost.
pub(super) fn frames<T, F>(what: &'static str, queue: broadcast::Receiver<T>, frame: F) -> Frames
where
    T: Clone + Send + 'static,
    F: FnMut(T) -> Option<Response> + Send + 'static,
{
    futures::stream::unfold((queue, frame), move |(mut queue, mut frame)| async move {
        loop {
            match queue.recv().await {
                Ok(item) => {
                    if let Some(response) = frame(item) {
                        return Some((response, (queue, frame)));
                    }
                }
                Err(broadcast::error::RecvError::Lagged(skipped)) => {
                    tracing::debug!(what, skipped, "a follower fell behind");
                    return Some((Response::LogGap(LogGap { skipped }), (queue, frame)));
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn items_become_frames_skips_are_dropped_and_lag_is_reported() {
        let (sender, queue) = broadcast::channel::<u64>(4);
        let mut frames = frames("test", queue, |n| {
            (n % 2 == 1).then(|| Response::LogGap(LogGap { skipped: n * 100 }))
        });
        for n in 1..=6 {
            sender.send(n).unwrap();
        }
        drop(sender);
        // Capacity 4: 1 and 2 were overwritten; 4 and 6 make no frame.
        assert_eq!(
            frames.next().await,
            Some(Response::LogGap(LogGap { skipped: 2 }))
        );
        assert_eq!(
            frames.next().await,
            Some(Response::LogGap(LogGap { skipped: 300 }))
        );
        assert_eq!(
            frames.next().await,
            Some(Response::LogGap(LogGap { skipped: 500 }))
        );
        assert_eq!(frames.next().await, None);
    }
}
