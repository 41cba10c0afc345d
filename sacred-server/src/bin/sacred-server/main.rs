//! The `sacred-server` binary: a Sacred hub with health and readiness checks,
//! configured by flags, environment and an optional TOML file, with graceful
//! shutdown on SIGTERM or Ctrl-C.
//!
//! Run with: cargo run --release -p sacred-server -- --help

#[cfg(feature = "sqlite")]
mod keys;
mod serve;
mod settings;
#[cfg(feature = "sqlite")]
mod store;
mod tls;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use sacred_server::Hub;
use settings::{Cli, LogFormat, Settings};
use tokio::net::TcpListener;

/// mimalloc rather than the system allocator: fan-out builds and frees a
/// batch buffer per subscriber and flush, which glibc's malloc answers with
/// page faults (it trims and refaults the heap), a quarter of the server's
/// CPU in the fan-out benchmark. Built without transparent huge pages, which
/// cost 1.5 KiB per idle connection (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::load(&cli) {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("sacred-server: {err}");
            return ExitCode::from(2);
        }
    };
    if let Some(settings::Command::AdminPassword) = cli.command {
        return admin_password();
    }
    if let Some(command) = cli.command {
        // Log lines to stderr: stdout is the command's output.
        let _ = init_logging(settings.log_format, true, None);
        return run_command(command, &settings.store).await;
    }
    // Checked by `Settings::load`; the guard flushes the spans at the end.
    let otlp = settings.otlp.exporter().ok().flatten();
    let _spans = match init_logging(settings.log_format, false, otlp.as_ref()) {
        Ok(guard) => guard,
        Err(err) => {
            eprintln!("sacred-server: {err}");
            return ExitCode::from(2);
        }
    };
    if let Some(otlp) = &otlp {
        // Checked above.
        let url = otlp.traces_url().unwrap_or_default();
        tracing::info!(%url, "exporting spans over OTLP/HTTP");
    }
    // A certificate that cannot be used stops the start like any bad setting.
    if let (Some(cert), Some(key)) = (&settings.tls.cert, &settings.tls.key)
        && let Err(err) = tls::Certificates::open(cert.clone(), key.clone())
    {
        eprintln!("sacred-server: {err}");
        return ExitCode::from(2);
    }
    match run(settings).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(%err, "sacred-server failed");
            ExitCode::FAILURE
        }
    }
}

async fn run(settings: Settings) -> Result<(), Box<dyn std::error::Error>> {
    // One descriptor per connection: raise the soft limit to the hard one,
    // as a server for thousands of connections must (1024 is a common default).
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::info!(limit, "open file limit"),
        Err(err) => tracing::warn!(%err, "could not raise the open file limit"),
    }
    let jwt = jwt(&settings).await?;
    // Installed before the hub is built, which registers its metrics.
    let mut builder = Hub::builder().options(settings.hub.clone());
    if settings.metrics.enabled {
        builder = builder.prometheus(sacred_server::install_prometheus()?);
    } else {
        tracing::info!("metrics off: no recorder, no /metrics");
    }
    if settings.metrics.bind.is_some() {
        builder = builder.metrics_apart();
    }
    let builder = with_store(builder, &settings.store)?;
    let (builder, api_keys) = with_api_keys(builder, &settings, jwt)?;
    let builder = with_broker(builder, &settings.broker).await?;
    let (mut router, hub) = builder.build()?;
    watch_api_keys(api_keys.as_ref(), &hub, &settings);
    if let Some(dir) = &settings.client_dir {
        let files = sacred_server::ClientFiles::from_dir(dir)
            .map_err(|err| format!("cannot serve the client from {}: {err}", dir.display()))?;
        tracing::info!(path = %files.path(), files = ?files.names(), "serving the browser client");
        router = router.merge(files.router());
    }
    // Bound now, so that the dashboard can name this node by its address.
    let listener = TcpListener::bind(settings.bind).await?;
    let address = listener.local_addr()?;
    let credential = settings.admin.credential()?;
    let password = settings.admin.password_hash()?;
    if credential.is_some() || password.is_some() {
        let mut admin = sacred_server::AdminApi::new(hub.clone())
            .node(address.to_string())
            .secure_cookies(
                settings
                    .admin
                    .secure_cookie
                    .unwrap_or(settings.tls.cert.is_some()),
            );
        if let Some((name, secret)) = credential {
            admin = admin.credential(name.clone(), secret.0)?;
            tracing::info!(credential = %name, "serving the signed admin API under /admin/api");
        }
        if let Some(hash) = password {
            let name = settings
                .admin
                .name
                .clone()
                .unwrap_or_else(|| "admin".to_owned());
            admin = admin.password(name, &hash)?;
            tracing::info!("serving the admin dashboard at /admin");
        }
        let admin = admin_keys(admin, api_keys.as_ref());
        router = router.merge(admin.router());
    }
    let tls = match &settings.tls.cert {
        Some(cert) => {
            let key = settings
                .tls
                .key
                .clone()
                .ok_or("--tls-cert needs --tls-key")?;
            let certificates = tls::Certificates::open(cert.clone(), key)?;
            let acceptor = certificates.acceptor()?;
            tokio::spawn(certificates.watch());
            // Browsers that once reached it over TLS keep to TLS for a year.
            router = router.layer(
                tower_http::set_header::SetResponseHeaderLayer::if_not_present(
                    axum::http::header::STRICT_TRANSPORT_SECURITY,
                    axum::http::HeaderValue::from_static("max-age=31536000"),
                ),
            );
            Some(acceptor)
        }
        None => None,
    };
    if let Some(bind) = settings.metrics.bind {
        let listener = TcpListener::bind(bind).await?;
        let metrics_address = listener.local_addr()?;
        tracing::info!(%metrics_address, "metrics and probes on http://{metrics_address}/metrics");
        let internal = hub.metrics_router();
        tokio::spawn(async move {
            if let Err(err) = axum::serve(listener, internal).await {
                tracing::error!(%err, "the metrics address stopped");
            }
        });
    }
    let (ws, http) = if tls.is_some() {
        ("wss", "https")
    } else {
        ("ws", "http")
    };
    tracing::info!(%address, tls = tls.is_some(), "sacred-server listening: {ws}://{address}/ws, {http}://{address}/health");
    let http = serve::Http {
        header_timeout: settings.header_timeout,
        tls,
    };
    serve::serve(listener, router, hub, http).await;
    tracing::info!("sacred-server stopped");
    Ok(())
}

/// `sacred-server admin-password`: the argon2id hash of the password on
/// standard input (its first line), for --admin-password-file.
fn admin_password() -> ExitCode {
    let mut password = String::new();
    if let Err(err) = std::io::stdin().read_line(&mut password) {
        eprintln!("sacred-server: cannot read the password from standard input: {err}");
        return ExitCode::FAILURE;
    }
    let password = password.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        eprintln!(
            "sacred-server: give the password on standard input, e.g. `sacred-server admin-password < file`"
        );
        return ExitCode::from(2);
    }
    println!("{}", sacred_server::admin::hash_password(password));
    ExitCode::SUCCESS
}

/// The JWT check the settings ask for, if any (a JWKS is fetched now).
async fn jwt(
    settings: &Settings,
) -> Result<Option<sacred_server::Jwt>, Box<dyn std::error::Error>> {
    use settings::JwtKeys;
    let Some(keys) = settings.jwt.keys()? else {
        return Ok(None);
    };
    let mut jwt = match keys {
        JwtKeys::Hs256(secret) => sacred_server::Jwt::hs256(&secret.0)?,
        JwtKeys::Rs256(pem) => sacred_server::Jwt::rs256_pem(&pem)?,
        JwtKeys::Es256(pem) => sacred_server::Jwt::es256_pem(&pem)?,
        JwtKeys::Jwks(url) => sacred_server::Jwt::jwks(url).await?,
    };
    if let Some(issuer) = &settings.jwt.issuer {
        jwt = jwt.issuer(issuer.clone());
    }
    if let Some(audience) = &settings.jwt.audience {
        jwt = jwt.audience(audience.clone());
    }
    if let Some(secs) = settings.jwt.leeway_secs {
        jwt = jwt.leeway(std::time::Duration::from_secs(secs));
    }
    tracing::info!(?jwt, "JWT authentication on");
    Ok(Some(jwt))
}

/// The hub with its streams in SQLite when `[store]` names a database.
#[cfg(feature = "sqlite")]
fn with_store(
    builder: sacred_server::HubBuilder,
    settings: &settings::StoreSettings,
) -> Result<sacred_server::HubBuilder, Box<dyn std::error::Error>> {
    match store::open(settings)? {
        Some(store) => Ok(builder.history_store(store)),
        None => Ok(builder),
    }
}

/// The authenticator chain: the store's API keys first when there is a
/// store, then the configured keys (and `allow_anonymous`).
#[cfg(feature = "sqlite")]
fn with_api_keys(
    builder: sacred_server::HubBuilder,
    settings: &Settings,
    jwt: Option<sacred_server::Jwt>,
) -> Result<
    (sacred_server::HubBuilder, Option<sacred_server::SqliteKeys>),
    Box<dyn std::error::Error>,
> {
    let keys = keys::open(&settings.store)?;
    if keys.is_none() && jwt.is_none() {
        return Ok((builder, None));
    }
    // JWTs first (a token that is not one is refused at once), then the
    // store's keys, then the configured ones.
    let first = jwt.map_or_else(sacred_server::Chain::new, |jwt| {
        sacred_server::Chain::new().or(jwt)
    });
    let builder = builder.authenticator(keys::chain(first, keys.as_ref(), &settings.hub));
    // The audit trail in the store too, beside the keys.
    let builder = match (&keys, settings.store.sqlite_path()) {
        (Some(_), Some(path)) => builder.audit_log(keys::audit_log(&path, &settings.store)?),
        _ => builder,
    };
    Ok((builder, keys))
}

/// Closes the live connections of revoked and expired store keys.
#[cfg(feature = "sqlite")]
fn watch_api_keys(keys: Option<&sacred_server::SqliteKeys>, hub: &Hub, settings: &Settings) {
    if let Some(keys) = keys {
        keys::watch(keys, hub, &settings.store);
    }
}

/// Without the `sqlite` feature there is no store to hold API keys.
#[cfg(not(feature = "sqlite"))]
fn with_api_keys(
    builder: sacred_server::HubBuilder,
    settings: &Settings,
    jwt: Option<sacred_server::Jwt>,
) -> Result<(sacred_server::HubBuilder, Option<()>), Box<dyn std::error::Error>> {
    let Some(jwt) = jwt else {
        return Ok((builder, None));
    };
    let configured = sacred_server::StaticKeys::new(
        settings.hub.api_keys.iter().cloned(),
        settings.hub.allow_anonymous,
    );
    let chain = sacred_server::Chain::new().or(jwt).or(configured);
    Ok((builder.authenticator(chain), None))
}

/// The admin API's key routes when the store holds keys.
#[cfg(feature = "sqlite")]
fn admin_keys(
    admin: sacred_server::AdminApi,
    keys: Option<&sacred_server::SqliteKeys>,
) -> sacred_server::AdminApi {
    match keys {
        Some(keys) => admin.keys(keys.clone()),
        None => admin,
    }
}

/// Without the `sqlite` feature the admin API has no key routes.
#[cfg(not(feature = "sqlite"))]
fn admin_keys(admin: sacred_server::AdminApi, _: Option<&()>) -> sacred_server::AdminApi {
    admin
}

/// Without the `sqlite` feature there are no store keys to watch.
#[cfg(not(feature = "sqlite"))]
fn watch_api_keys(_: Option<&()>, _: &Hub, _: &Settings) {}

/// Runs a store maintenance command.
#[cfg(feature = "sqlite")]
async fn run_command(command: settings::Command, settings: &settings::StoreSettings) -> ExitCode {
    match store::run(command, settings).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("sacred-server: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Built without the `sqlite` feature: there is no store to maintain.
#[cfg(not(feature = "sqlite"))]
async fn run_command(_: settings::Command, _: &settings::StoreSettings) -> ExitCode {
    eprintln!(
        "sacred-server: this sacred-server was built without the `sqlite` feature: \
         rebuild with --features sqlite for store commands"
    );
    ExitCode::from(2)
}

/// Built without the `sqlite` feature: streams in memory only.
#[cfg(not(feature = "sqlite"))]
fn with_store(
    builder: sacred_server::HubBuilder,
    settings: &settings::StoreSettings,
) -> Result<sacred_server::HubBuilder, Box<dyn std::error::Error>> {
    match &settings.url {
        None => Ok(builder),
        Some(_) => Err(
            "this sacred-server was built without the `sqlite` feature: \
             rebuild with --features sqlite to use --store"
                .into(),
        ),
    }
}

/// The hub on Redis when `[broker]` names shards; as it is otherwise.
#[cfg(feature = "redis")]
async fn with_broker(
    builder: sacred_server::HubBuilder,
    settings: &settings::BrokerSettings,
) -> Result<sacred_server::HubBuilder, Box<dyn std::error::Error>> {
    if settings.urls.is_empty() {
        return Ok(builder);
    }
    let mut config = sacred_server::RedisConfig::new(settings.urls.iter().cloned());
    if let Some(prefix) = &settings.prefix {
        config = config.prefix(prefix.clone());
    }
    if let Some(secs) = settings.presence_ttl_secs {
        config = config.presence_ttl(std::time::Duration::from_secs(secs.max(1)));
    }
    if let Some(secs) = settings.timeout_secs {
        config = config.timeout(std::time::Duration::from_secs(secs.max(1)));
    }
    let broker = sacred_server::RedisBroker::connect(config).await?;
    tracing::info!(shards = settings.urls.len(), "broker: Redis");
    let presence = broker.presence();
    Ok(builder.broker(broker).presence_store(presence))
}

/// Built without the `redis` feature: one node only.
#[cfg(not(feature = "redis"))]
async fn with_broker(
    builder: sacred_server::HubBuilder,
    settings: &settings::BrokerSettings,
) -> Result<sacred_server::HubBuilder, Box<dyn std::error::Error>> {
    if settings.urls.is_empty() {
        Ok(builder)
    } else {
        Err("this sacred-server was built without the `redis` feature; rebuild with --features redis".into())
    }
}

/// Log lines (filtered by `SACRED_LOG`, default `info`) and, with an OTLP
/// exporter, spans to the collector (Sacred's `DEBUG` spans, filtered apart).
fn init_logging(
    format: LogFormat,
    to_stderr: bool,
    otlp: Option<&sacred_server::otlp::Otlp>,
) -> Result<Option<sacred_server::otlp::OtlpGuard>, sacred_server::otlp::OtlpError> {
    use tracing_subscriber::prelude::*;

    let filter = tracing_subscriber::EnvFilter::try_from_env("SACRED_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: a log file or a collector gets plain text.
    let terminal = if to_stderr {
        std::io::stderr().is_terminal()
    } else {
        std::io::stdout().is_terminal()
    };
    let writer = move || -> Box<dyn std::io::Write> {
        if to_stderr {
            Box::new(std::io::stderr())
        } else {
            Box::new(std::io::stdout())
        }
    };
    let lines = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(terminal);
    let lines = match format {
        LogFormat::Text => lines.with_filter(filter).boxed(),
        LogFormat::Json => lines.json().with_filter(filter).boxed(),
    };
    let (spans, guard) = match otlp {
        Some(otlp) => {
            let (layer, guard) = otlp.install()?;
            (Some(layer), Some(guard))
        }
        None => (None, None),
    };
    tracing_subscriber::registry()
        .with(lines)
        .with(spans)
        .init();
    Ok(guard)
}
