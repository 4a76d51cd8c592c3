//! The authenticator app (TOTP) on the account page: set up from a QR code (or the secret typed
//! in), confirmed with a first code; turned off with a current code. The API decides (recent
//! login, replay of a code's step, lockout); the page draws the QR code.

use axum::extract::State;
use axum::http::{header, HeaderValue, Method};
use axum::response::Response;
use serde_json::json;

use super::{Browser, Failure, Form, PagesState};

/// `otpauth://` URI as an SVG QR code, as a `data:` URL for an `<img>` (the CSP allows
/// `img-src data:`; no markup from outside reaches the page).
fn qr_data_url(uri: &str) -> Option<String> {
    let code = qrcode::QrCode::new(uri.as_bytes()).ok()?;
    let svg = code.render::<qrcode::render::svg::Color<'_>>().min_dimensions(220, 220).quiet_zone(true).build();
    Some(format!("data:image/svg+xml;base64,{}", base64::Engine::encode(&base64::engine::general_purpose::STANDARD, svg)))
}

impl super::Pages {
    fn totp_form(&self, csrf: &str, secret: &str, uri: &str, failure: Option<Failure<'_>>) -> Response {
        let mut ctx = self.ctx("Set up an authenticator app", csrf);
        ctx.insert("secret".into(), json!(secret));
        ctx.insert("uri".into(), json!(uri));
        ctx.insert("qr".into(), json!(qr_data_url(uri)));
        let mut resp = self.html("totp.html", ctx, Vec::new(), failure);
        resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        resp
    }
}

pub async fn enrol(State(pages): State<PagesState>, browser: Browser, form: Form) -> Response {
    let reply = match pages.act(&browser, &form, Method::POST, "/v1/me/totp", None).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    match (reply.ok(), reply.str("secret"), reply.str("otpauth_uri")) {
        (true, Some(secret), Some(uri)) => pages.totp_form(form.get("csrf").unwrap_or(""), secret, uri, None),
        _ => pages.account(&browser, None, Some(Failure::Api(&reply))).await,
    }
}

pub async fn confirm(State(pages): State<PagesState>, browser: Browser, form: Form) -> Response {
    let body = json!({ "code": form.get("code").unwrap_or("").trim() });
    let reply = match pages.act(&browser, &form, Method::POST, "/v1/me/totp/confirm", Some(body)).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    if reply.ok() {
        return pages.redirect(&pages.path("/account?done=totp_on"), Vec::new());
    }
    // The secret and URI come back from this browser's own form, only to draw the page again;
    // the API holds the secret that counts.
    let (secret, uri) = (form.get("secret").unwrap_or(""), form.get("uri").unwrap_or(""));
    if reply.code() == "no_enrolment" || !uri.starts_with("otpauth://") {
        return pages.account(&browser, None, Some(Failure::Api(&reply))).await;
    }
    pages.totp_form(form.get("csrf").unwrap_or(""), secret, uri, Some(Failure::Api(&reply)))
}

pub async fn disable(State(pages): State<PagesState>, browser: Browser, form: Form) -> Response {
    let body = json!({ "code": form.get("code").unwrap_or("").trim() });
    match pages.act(&browser, &form, Method::DELETE, "/v1/me/totp", Some(body)).await {
        Ok(reply) if reply.ok() => pages.redirect(&pages.path("/account?done=totp_off"), Vec::new()),
        Ok(reply) => pages.account(&browser, None, Some(Failure::Api(&reply))).await,
        Err(resp) => resp,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn qr_codes_are_svg_data_urls() {
        let url = super::qr_data_url("otpauth://totp/authgate:a%40example.com?secret=JBSWY3DPEHPK3PXP&issuer=authgate").unwrap();
        let svg = url.strip_prefix("data:image/svg+xml;base64,").unwrap();
        let svg = String::from_utf8(base64::Engine::decode(&base64::engine::general_purpose::STANDARD, svg).unwrap()).unwrap();
        assert!(svg.contains("<svg") && svg.contains("width=\"") && !svg.contains("<script"), "{svg}");
    }
}
