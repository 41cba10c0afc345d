//! The accept loop: HTTP/1.1 with upgrades over hyper, so that the binary can
//! bound what axum's `serve` leaves open: a request whose headers never
//! complete is closed after `header_timeout`, and shutdown ends after the
//! drain whatever sockets are still open.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use sacred_server::Hub;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceExt;

/// How long HTTP exchanges still in progress (a health check, an upgrade
/// being answered) may take once the hub has drained, before the process exits.
const HTTP_GRACE: Duration = Duration::from_secs(2);

/// What the accept loop is configured with.
pub(crate) struct Http {
    /// A connection whose request headers are not complete by then is
    /// closed (with TLS, the handshake must also be done by then).
    pub(crate) header_timeout: Duration,
    /// TLS on every connection, when configured.
    pub(crate) tls: Option<tokio_rustls::TlsAcceptor>,
}

/// Serves `router` until the first SIGTERM or Ctrl-C, then drains the hub
/// (still answering, so that `/ready` tells balancers 503 and new upgrades
/// are refused) and returns. A second signal during the drain returns at once.
pub(crate) async fn serve(listener: TcpListener, router: Router, hub: Hub, http: Http) {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(http.header_timeout);
    // Every HTTP connection task holds a receiver; `stop` tells them to finish,
    // and `stop.closed()` resolves once the last one has.
    let (stop, stopping) = watch::channel(false);
    let accept = || accept(&listener, &builder, &router, &stopping, &http);
    tokio::select! {
        () = accept() => {}
        () = signal() => {}
    }
    tracing::info!(
        connections = hub.connections(),
        "shutting down: not ready, migrate advice sent, draining (a second signal exits at once)"
    );
    tokio::select! {
        () = hub.shutdown() => {}
        () = accept() => {}
        () = signal() => {
            tracing::warn!("second signal: exiting without waiting for the drain");
            return;
        }
    }
    drop(listener);
    let _ = stop.send(true);
    tokio::select! {
        result = tokio::time::timeout(HTTP_GRACE, stop.closed()) => if result.is_err() {
            tracing::warn!("HTTP connections still open after the drain are closed");
        },
        () = signal() => tracing::warn!("second signal: exiting now"),
    }
}

/// Accepts connections and serves each on its own task; runs until dropped.
async fn accept(
    listener: &TcpListener,
    builder: &hyper::server::conn::http1::Builder,
    router: &Router,
    stopping: &watch::Receiver<bool>,
    http: &Http,
) {
    loop {
        let (tcp, remote) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                // Out of descriptors, typically: let some connections end.
                tracing::warn!(%err, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if let Err(err) = tcp.set_nodelay(true) {
            tracing::warn!(%err, "cannot set TCP_NODELAY");
        }
        let service = router
            .clone()
            .map_request(move |mut request: Request<Incoming>| {
                request.extensions_mut().insert(ConnectInfo(remote));
                request
            });
        let service = TowerToHyperService::new(service);
        let Some(tls) = &http.tls else {
            let connection = builder
                .serve_connection(TokioIo::new(tcp), service)
                .with_upgrades();
            tokio::spawn(exchange(connection, stopping.clone(), remote));
            continue;
        };
        let (tls, builder, stopping) = (tls.clone(), builder.clone(), stopping.clone());
        let handshake_timeout = http.header_timeout;
        tokio::spawn(async move {
            match tokio::time::timeout(handshake_timeout, tls.accept(tcp)).await {
                Ok(Ok(stream)) => {
                    let connection = builder
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades();
                    exchange(connection, stopping, remote).await;
                }
                Ok(Err(err)) => tracing::debug!(%remote, %err, "TLS handshake failed"),
                Err(_) => tracing::debug!(%remote, "TLS handshake not done in time: closed"),
            }
        });
    }
}

/// One HTTP connection: served until it ends or shutdown asks it to finish
/// (after the response in progress, if any).
async fn exchange<C>(connection: C, mut stopping: watch::Receiver<bool>, remote: SocketAddr)
where
    C: GracefulFuture,
{
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = stopped(&mut stopping) => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(err) = result {
        tracing::debug!(%remote, %err, "HTTP connection ended with an error");
    }
}

/// Resolves once shutdown asks connections to finish. (The guard `wait_for`
/// returns is not `Send`; dropping it here keeps the task `Send`.)
async fn stopped(stopping: &mut watch::Receiver<bool>) {
    let _ = stopping.wait_for(|stop| *stop).await;
}

/// hyper's HTTP/1.1 connection with upgrades: a future that can be asked to
/// finish gracefully.
trait GracefulFuture: std::future::Future<Output = Result<(), hyper::Error>> {
    fn graceful_shutdown(self: std::pin::Pin<&mut Self>);
}

impl<I, S, B> GracefulFuture for hyper::server::conn::http1::UpgradeableConnection<I, S>
where
    S: hyper::service::HttpService<Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    B: hyper::body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn graceful_shutdown(self: std::pin::Pin<&mut Self>) {
        hyper::server::conn::http1::UpgradeableConnection::graceful_shutdown(self);
    }
}

/// Resolves at the next SIGTERM or Ctrl-C.
async fn signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => drop(signal.recv().await),
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
