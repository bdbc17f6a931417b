//! A cap on open connections: the accept step takes a permit, the connection holds it until it
//! closes, and a connection accepted without one is closed at once.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum_server::accept::Accept;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Room for `connections` sockets plus the process's own files: the soft limit on open files
/// raised towards the hard one when needed. Returns the connections that fit (fewer, with a
/// warning, when the hard limit is too low).
pub fn fit_open_files(connections: usize) -> usize {
    // Model files, logs, the runtime's own descriptors, outgoing sockets.
    const RESERVE: u64 = 256;
    let want = connections as u64 + RESERVE;
    let Ok((soft, hard)) = rlimit::Resource::NOFILE.get() else {
        return connections;
    };
    if soft >= want {
        return connections;
    }
    let raised = want.min(hard);
    if rlimit::Resource::NOFILE.set(raised, hard).is_err() {
        tracing::warn!(soft, hard, "could not raise the open-files limit");
    }
    let now = rlimit::Resource::NOFILE.get().map_or(soft, |(s, _)| s);
    let fit = now.saturating_sub(RESERVE).max(1) as usize;
    if fit < connections {
        tracing::warn!(
            max_connections = connections,
            open_files_limit = now,
            "max_connections lowered to {fit}: the open-files limit leaves room for no more"
        );
    }
    fit.min(connections)
}

/// Wraps an acceptor so that at most `max` of its connections are open at once.
#[derive(Debug, Clone)]
pub struct Capped<A> {
    inner: A,
    permits: Arc<Semaphore>,
}

impl Capped<()> {
    pub fn new(max: usize) -> Self {
        Self {
            inner: (),
            permits: Arc::new(Semaphore::new(max)),
        }
    }

    pub fn wrap<A>(&self, inner: A) -> Capped<A> {
        Capped {
            inner,
            permits: self.permits.clone(),
        }
    }
}

impl<A, I, S> Accept<I, S> for Capped<A>
where
    A: Accept<I, S> + Clone + Send + 'static,
    A::Future: Send,
    I: Send + 'static,
    S: Send + 'static,
{
    type Stream = Permitted<A::Stream>;
    type Service = A::Service;
    type Future = Pin<Box<dyn Future<Output = io::Result<(Self::Stream, Self::Service)>> + Send>>;

    fn accept(&self, stream: I, service: S) -> Self::Future {
        let permit = self.permits.clone().try_acquire_owned();
        let inner = self.inner.clone();
        Box::pin(async move {
            // Dropping `stream` closes the socket.
            let permit = permit.map_err(|_| io::Error::other("too many open connections"))?;
            let (stream, service) = inner.accept(stream, service).await?;
            Ok((
                Permitted {
                    inner: stream,
                    _permit: permit,
                },
                service,
            ))
        })
    }
}

/// A connection's stream with the permit it holds while open.
#[derive(Debug)]
pub struct Permitted<S> {
    inner: S,
    _permit: OwnedSemaphorePermit,
}

impl<S: AsyncRead + Unpin> AsyncRead for Permitted<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Permitted<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
