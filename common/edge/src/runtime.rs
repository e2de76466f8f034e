//! One binary, three runtimes: under AWS Lambda (`AWS_LAMBDA_RUNTIME_API` is set) the
//! router is served through `lambda_http`; anywhere else (Cloud Run, a laptop) it listens
//! on `0.0.0.0:$PORT` and drains in-flight requests on SIGTERM or Ctrl-C.

use std::net::SocketAddr;

use anyhow::Context;
use axum::Router;
use tokio::net::TcpListener;

/// Is this process running under the Lambda runtime?
pub fn on_lambda() -> bool {
    std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some()
}

/// Serves `app` until shut down. `streaming` selects Lambda response streaming (a Function
/// URL in `RESPONSE_STREAM` mode), which the SSE routes need.
pub async fn serve(app: Router, port: u16, streaming: bool) -> anyhow::Result<()> {
    if on_lambda() {
        tracing::info!(streaming, "serving through the Lambda runtime");
        // Spans and metrics leave before the invocation returns: a frozen sandbox sends
        // nothing (a streamed answer's later spans go with the next invocation's).
        let app = tower::ServiceExt::<lambda_http::Request>::map_future(app, |answer| async move {
            let response = answer.await;
            crate::telemetry::flush().await;
            response
        });
        let result = if streaming {
            lambda_http::run_with_streaming_response(app).await
        } else {
            lambda_http::run(app).await
        };
        return result.map_err(|e| anyhow::anyhow!("lambda runtime: {e}"));
    }
    let listener = TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], port)))
        .await
        .with_context(|| format!("binding 0.0.0.0:{port}"))?;
    serve_http(listener, app, shutdown_signal()).await
}

/// Like [`serve`], for a function that also receives non-HTTP Lambda events (EventBridge
/// schedules): API Gateway events go to the router, anything else to `on_event`. Off Lambda
/// it is plain HTTP (the scheduler then calls an HTTP route).
pub async fn serve_with_events<F, Fut>(app: Router, port: u16, on_event: F) -> anyhow::Result<()>
where
    F: Fn(serde_json::Value) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<serde_json::Value, String>> + Send + 'static,
{
    if !on_lambda() {
        return serve(app, port, false).await;
    }
    tracing::info!("serving HTTP and scheduled events through the Lambda runtime");
    let handler = lambda_http::lambda_runtime::service_fn(
        move |event: lambda_http::LambdaEvent<serde_json::Value>| {
            let (app, on_event) = (app.clone(), on_event.clone());
            async move {
                let outcome = dispatch(app, on_event, event).await;
                crate::telemetry::flush().await;
                outcome
            }
        },
    );
    lambda_http::lambda_runtime::run(handler)
        .await
        .map_err(|e| anyhow::anyhow!("lambda runtime: {e}"))
}

/// Routes one Lambda event: API Gateway (v2) and Function URL events through `lambda_http`'s
/// adapter to the router; anything else to `on_event`.
pub async fn dispatch<F, Fut>(
    app: Router,
    on_event: F,
    event: lambda_http::LambdaEvent<serde_json::Value>,
) -> Result<serde_json::Value, lambda_http::Error>
where
    F: Fn(serde_json::Value) -> Fut,
    Fut: Future<Output = Result<serde_json::Value, String>>,
{
    use lambda_http::{Adapter, Service, request::LambdaRequest};
    let lambda_http::LambdaEvent { payload, context } = event;
    if payload.get("requestContext").is_some() && payload.get("rawPath").is_some() {
        let request: LambdaRequest = serde_json::from_value(payload)?;
        let mut adapter = Adapter::from(app);
        let response = adapter
            .call(lambda_http::LambdaEvent::new(request, context))
            .await?;
        return Ok(serde_json::to_value(response)?);
    }
    on_event(payload).await.map_err(lambda_http::Error::from)
}

/// Plain HTTP on `listener` until `shutdown` resolves, then drains.
pub async fn serve_http(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    use axum::serve::ListenerExt;
    let addr = listener.local_addr().context("local address")?;
    tracing::info!(%addr, "listening");
    // No Nagle: a streamed answer is many small writes, and Nagle's algorithm holds each one
    // back until the client acknowledges the last (a delayed ACK: ~40 ms per event).
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY");
        }
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .context("serving HTTP")?;
    tracing::info!("stopped");
    Ok(())
}

/// Cancelled once the process is asked to stop (SIGTERM, SIGINT): long-lived work — a chat
/// run's stream — ends itself with a terminal event, so that graceful shutdown can finish.
pub fn draining() -> &'static tokio_util::sync::CancellationToken {
    static DRAINING: std::sync::OnceLock<tokio_util::sync::CancellationToken> =
        std::sync::OnceLock::new();
    DRAINING.get_or_init(tokio_util::sync::CancellationToken::new)
}

/// Resolves on SIGTERM (Cloud Run, `kill`) or SIGINT (Ctrl-C), and starts [`draining`].
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown signal received; draining");
    draining().cancel();
}
