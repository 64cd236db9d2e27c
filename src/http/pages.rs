//! The browser side, compiled into the binary: the patient, doctor and
//! display pages, their assets, and the browser SDK.
//!
//! `web/pages/` is served under `/assets/`, `web/sdk/` under `/sdk/` (so an
//! app imports `/sdk/telehub.js`), and three pages at `/patient`, `/doctor`
//! and `/display`. The pages hold no secret: each reads its token from the
//! URL fragment, which browsers do not send to servers or put in logs.
//! Every response carries a Content-Security-Policy that allows scripts and
//! frames only from the hub itself and the configured Jitsi deployment.

use actix_web::http::header;
use actix_web::{HttpResponse, get, web};
use rust_embed::RustEmbed;

use super::error::ApiError;
use crate::app::AppState;

/// The pages and the SDK under `web/`, without the SDK's tests.
#[derive(RustEmbed)]
#[folder = "web/"]
#[include = "pages/*"]
#[include = "sdk/*.js"]
#[include = "sdk/*.d.ts"]
#[include = "sdk/*.md"]
struct Web;

/// The security policy of every page and asset.
pub fn content_security_policy(app: &AppState) -> String {
    let jitsi = app.settings.jitsi_domain.as_deref().map(|d| format!(" https://{d}")).unwrap_or_default();
    format!(
        "default-src 'self'; script-src 'self'{jitsi}; frame-src{frame}; connect-src 'self' ws: wss:; \
         img-src 'self' data: blob:; media-src 'self' blob: mediastream:; style-src 'self'; \
         base-uri 'none'; form-action 'self'; frame-ancestors 'self'",
        frame = if jitsi.is_empty() { " 'none'" } else { jitsi.as_str() }
    )
}

/// Serves one embedded file, or 404.
fn serve(app: &AppState, path: &str) -> Result<HttpResponse, ApiError> {
    let file = Web::get(path).ok_or_else(|| ApiError::not_found(format!("no such file /{path}")))?;
    let mime = file.metadata.mimetype();
    // `.d.ts` would otherwise be served as a video format.
    let mime = if path.ends_with(".d.ts") || path.ends_with(".ts") { "text/plain; charset=utf-8" } else { mime };
    let mime = if mime.starts_with("text/") && !mime.contains("charset") {
        format!("{mime}; charset=utf-8")
    } else {
        mime.to_owned()
    };
    Ok(HttpResponse::Ok()
        .content_type(mime)
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::ETAG, format!("\"{}\"", hex(&file.metadata.sha256_hash()[..8]))))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .insert_header(("Referrer-Policy", "no-referrer"))
        .insert_header(("Content-Security-Policy", content_security_policy(app)))
        .body(file.data.into_owned()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Names of files that may be asked for: no folders, no dot-files.
fn plain_name(name: &str) -> Result<&str, ApiError> {
    let ok = !name.is_empty()
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok { Ok(name) } else { Err(ApiError::not_found("no such file")) }
}

#[get("/patient")]
pub async fn patient(app: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    serve(&app, "pages/patient.html")
}

#[get("/doctor")]
pub async fn doctor(app: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    serve(&app, "pages/doctor.html")
}

#[get("/display")]
pub async fn display(app: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    serve(&app, "pages/display.html")
}

#[get("/assets/{file}")]
pub async fn asset(app: web::Data<AppState>, file: web::Path<String>) -> Result<HttpResponse, ApiError> {
    serve(&app, &format!("pages/{}", plain_name(&file)?))
}

#[get("/sdk/{file}")]
pub async fn sdk(app: web::Data<AppState>, file: web::Path<String>) -> Result<HttpResponse, ApiError> {
    serve(&app, &format!("sdk/{}", plain_name(&file)?))
}

/// The demo launcher (demo mode only).
pub(crate) fn launcher(app: &AppState) -> Result<HttpResponse, ApiError> {
    serve(app, "pages/index.html")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_file_names_are_served() {
        assert!(plain_name("telehub.js").is_ok());
        for bad in ["", ".env", "../Cargo.toml", "a/b.js", "x%2Fy"] {
            assert!(plain_name(bad).is_err(), "{bad}");
        }
    }
}
