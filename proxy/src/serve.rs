//! Serving one HTTP/1.1 connection until it ends or shutdown asks it to finish.

use std::future::Future;
use std::pin::pin;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::HttpService;
use hyper_util::rt::TokioTimer;

use crate::body::ProxyBody;
use crate::settings::Limits;
use crate::state::Lifecycle;

/// An HTTP/1.1 server builder with gitgate's timeouts.
pub(crate) fn builder(limits: &Limits) -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    builder
}

/// Drives `conn`; on shutdown lets the request in flight finish, then closes.
pub(crate) async fn until_shutdown<C>(conn: C, mut lifecycle: Lifecycle) -> Result<(), hyper::Error>
where
    C: Future<Output = Result<(), hyper::Error>> + GracefulConn,
{
    let mut conn = pin!(conn);
    tokio::select! {
        result = conn.as_mut() => result,
        () = lifecycle.stopping() => {
            conn.as_mut().start_graceful();
            conn.await
        }
    }
}

/// Connections that can be asked to stop after the current request.
pub(crate) trait GracefulConn {
    fn start_graceful(self: std::pin::Pin<&mut Self>);
}

impl<I, S> GracefulConn for http1::Connection<I, S>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    S: HttpService<Incoming, ResBody = ProxyBody>,
{
    fn start_graceful(self: std::pin::Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

impl<I, S> GracefulConn for http1::UpgradeableConnection<I, S>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: HttpService<Incoming, ResBody = ProxyBody>,
{
    fn start_graceful(self: std::pin::Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}
