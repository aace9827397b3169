//! A byte stream wrapper that drops a connection whose client stops reading answers.
//!
//! hyper has deadlines for reading a request head but none for writing: a client that
//! sends requests and never reads the answers would hold its connection (and its
//! slot under the connection limit) for ever once the socket's send buffer is full.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Fails a write that has made no progress for `timeout`. The timer is created only
/// the first time a write has to wait, and is re-armed only when one waits again, so a
/// connection whose writes always go straight through (nearly all of them) pays for
/// one branch per write.
pub(crate) struct SendDeadline<I> {
    inner: I,
    timeout: Duration,
    /// Armed while a write is waiting; `None` until the first write ever waits.
    stalled: Option<Pin<Box<Sleep>>>,
    /// Whether `stalled` is counting for the write now waiting.
    armed: bool,
}

impl<I> SendDeadline<I> {
    pub(crate) fn new(inner: I, timeout: Duration) -> Self {
        Self {
            inner,
            timeout,
            stalled: None,
            armed: false,
        }
    }

    /// Called when the inner write is pending: starts the clock, or fails when it ran
    /// out.
    fn wait(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if !self.armed {
            let deadline = Instant::now() + self.timeout;
            match &mut self.stalled {
                Some(sleep) => sleep.as_mut().reset(deadline),
                None => self.stalled = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
            self.armed = true;
        }
        let sleep = self.stalled.as_mut().expect("armed above");
        ready!(sleep.as_mut().poll(cx));
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the client did not read the answer in time",
        )))
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for SendDeadline<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for SendDeadline<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, buf) {
            Poll::Pending => self.wait(cx),
            done => {
                self.armed = false;
                done
            }
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write_vectored(cx, bufs) {
            Poll::Pending => self.wait(cx),
            done => {
                self.armed = false;
                done
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.inner).poll_flush(cx) {
            Poll::Pending => self.wait(cx).map_ok(|_| ()),
            done => {
                self.armed = false;
                done
            }
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.inner).poll_shutdown(cx) {
            Poll::Pending => self.wait(cx).map_ok(|_| ()),
            done => {
                self.armed = false;
                done
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test(start_paused = true)]
    async fn a_write_the_peer_never_reads_fails_after_the_timeout() {
        // A 64-byte pipe nobody reads: the second write waits for ever.
        let (ours, _theirs) = tokio::io::duplex(64);
        let mut io = SendDeadline::new(ours, Duration::from_secs(5));
        io.write_all(&[0; 64]).await.unwrap();
        let started = Instant::now();
        let err = io.write_all(&[0; 64]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn progress_restarts_the_clock() {
        let (ours, mut theirs) = tokio::io::duplex(64);
        let mut io = SendDeadline::new(ours, Duration::from_secs(5));
        let reader = tokio::spawn(async move {
            let mut buf = [0; 64];
            // Reads a little every 3 s: each wait is under the 5 s timeout.
            for _ in 0..4 {
                tokio::time::sleep(Duration::from_secs(3)).await;
                tokio::io::AsyncReadExt::read_exact(&mut theirs, &mut buf)
                    .await
                    .unwrap();
            }
            // Kept open until the writer is done: a closed pipe fails the last write.
            theirs
        });
        for _ in 0..5 {
            io.write_all(&[1; 64]).await.unwrap();
        }
        reader.await.unwrap();
    }
}
