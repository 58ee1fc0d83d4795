//! Per-connection activity tracking: the idle timeout and the byte counts both
//! come from wrapping the two streams, because `copy_bidirectional` reports
//! nothing until it returns (and an idle-timed-out copy never returns).

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Last-activity clock plus bytes read from each side of one connection.
#[derive(Debug)]
pub(crate) struct Activity {
    base: Instant,
    last_ms: AtomicU64,
    /// Bytes read from the client (= sent to the target).
    pub from_client: AtomicU64,
    /// Bytes read from the target (= sent to the client).
    pub from_target: AtomicU64,
}

impl Activity {
    pub fn new() -> Self {
        Self {
            base: Instant::now(),
            last_ms: AtomicU64::new(0),
            from_client: AtomicU64::new(0),
            from_target: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn touch(&self) {
        self.last_ms.store(self.now_ms(), Relaxed);
    }

    fn idle_for(&self) -> Duration {
        Duration::from_millis(self.now_ms().saturating_sub(self.last_ms.load(Relaxed)))
    }

    /// Resolves once nothing moved in either direction for `limit`.
    pub async fn idle_exceeds(&self, limit: Duration) {
        loop {
            let idle = self.idle_for();
            if idle >= limit {
                return;
            }
            tokio::time::sleep(limit - idle).await;
        }
    }
}

/// Which side a [`Tracked`] stream is; decides which counter its reads feed.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Side {
    Client,
    Target,
}

/// A stream that reports reads/writes to an [`Activity`].
pub(crate) struct Tracked<'a, T> {
    inner: T,
    activity: &'a Activity,
    side: Side,
}

impl<'a, T> Tracked<'a, T> {
    pub fn new(inner: T, activity: &'a Activity, side: Side) -> Self {
        Self { inner, activity, side }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Tracked<'_, T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let res = Pin::new(&mut this.inner).poll_read(cx, buf);
        let n = (buf.filled().len() - before) as u64;
        if n > 0 {
            let counter = match this.side {
                Side::Client => &this.activity.from_client,
                Side::Target => &this.activity.from_target,
            };
            counter.fetch_add(n, Relaxed);
            this.activity.touch();
        }
        res
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tracked<'_, T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let res = Pin::new(&mut this.inner).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = res
            && n > 0
        {
            // A slow reader draining a large response is not idle.
            this.activity.touch();
        }
        res
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
