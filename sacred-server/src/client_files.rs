//! Serving the browser package from the hub itself, so a page (or a CDN in
//! front) loads the client from the hub it talks to: the files of a
//! directory (the built `@sacred/client`, `scripts/wasm-package.sh`) under
//! `/client/v{VERSION}/`, read once at start, with long-lived cache headers
//! (the path changes with every version) and an ETag. The files are public,
//! so any origin may load them (`Access-Control-Allow-Origin: *`): a page on
//! another origin imports the module and fetches its `.wasm` in CORS mode.
//! Off unless asked for.
//!
//! ```no_run
//! # fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let (router, _hub) = sacred_server::Hub::builder().build()?;
//! let files = sacred_server::ClientFiles::from_dir("target/wasm-package")?;
//! println!("the client is at {}", files.path());
//! let app = router.merge(files.router());
//! # let _ = app;
//! # Ok(())
//! # }
//! ```

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::Path as UrlPath;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

/// The package's version, which its URL carries.
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Files served under `/client/v{VERSION}/`: a year of caching, immutable.
const CACHE: &str = "public, max-age=31536000, immutable";

#[derive(Debug)]
struct File {
    body: axum::body::Bytes,
    content_type: &'static str,
    etag: HeaderValue,
}

/// The browser package's files, ready to serve (see the module docs).
#[derive(Clone, Debug)]
pub struct ClientFiles {
    files: Arc<HashMap<String, File>>,
}

impl ClientFiles {
    /// Reads every regular file directly in `dir` (the built package).
    pub fn from_dir(dir: impl AsRef<Path>) -> std::io::Result<ClientFiles> {
        let mut files = HashMap::new();
        for entry in std::fs::read_dir(dir.as_ref())? {
            let entry = entry?;
            if !entry.file_type()?.is_file() {
                continue;
            }
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            let body = std::fs::read(entry.path())?;
            let digest = Sha256::digest(&body);
            let etag = format!("\"{}\"", hex::encode(&digest[..16]));
            let file = File {
                content_type: content_type(&name),
                etag: HeaderValue::from_str(&etag).expect("hex is a valid header value"),
                body: body.into(),
            };
            files.insert(name, file);
        }
        if files.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{} holds no files", dir.as_ref().display()),
            ));
        }
        Ok(ClientFiles {
            files: Arc::new(files),
        })
    }

    /// The path the files are served under, `/client/v{VERSION}/`.
    pub fn path(&self) -> String {
        format!("/client/v{VERSION}/")
    }

    /// The names of the files served.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.files.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    /// A router serving them (GET and HEAD); merge it into the hub's.
    pub fn router<S: Clone + Send + Sync + 'static>(self) -> Router<S> {
        let route = format!("/client/v{VERSION}/{{file}}");
        let router = Router::new().route(
            &route,
            get(move |UrlPath(name): UrlPath<String>, headers: HeaderMap| {
                let files = self.files.clone();
                async move { serve(&files, &name, &headers) }
            }),
        );
        crate::headers::secure(router)
    }
}

fn serve(files: &HashMap<String, File>, name: &str, headers: &HeaderMap) -> Response {
    let Some(file) = files.get(name) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|tags| {
            tags.split(',')
                .any(|tag| tag.trim() == file.etag || tag.trim() == "*")
        });
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        Response::new(Body::from(file.body.clone()))
    };
    let set = response.headers_mut();
    set.insert(header::ETAG, file.etag.clone());
    set.insert(header::CACHE_CONTROL, HeaderValue::from_static(CACHE));
    set.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    set.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // A page served beside the package (a demo, the README's example) runs
    // its own scripts and connects to the hub: it may not be framed, and
    // nothing more; the package's own files get the strict policy.
    if file.content_type.starts_with("text/html") {
        set.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("frame-ancestors 'none'"),
        );
    }
    if !fresh {
        set.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(file.content_type),
        );
    }
    response
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next() {
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("wasm") => "application/wasm",
        Some("json") => "application/json",
        Some("ts") => "text/plain; charset=utf-8",
        Some("md") => "text/markdown; charset=utf-8",
        Some("html") => "text/html; charset=utf-8",
        _ => "application/octet-stream",
    }
}
