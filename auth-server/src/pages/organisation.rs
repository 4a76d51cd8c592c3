//! The organisation page for its admins: members with their roles (change them, disable a
//! member, enable them again), invitations (send one with roles, cancel one), and the organisation's apps (register one, see its secret once, revoke). The page
//! offers the roles an admin might grant; the API decides who may grant what to whom
//! (docs/authority.md), and its refusals are shown as they come.

use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};

use super::{notice, Browser, Failure, Form, PagesState};
use crate::authority::PLATFORM_ROLES;

impl super::Pages {
    async fn organisation(&self, browser: &Browser, done: Option<&str>, failure: Option<Failure<'_>>) -> Response {
        self.organisation_page(browser, done, None, failure).await
    }

    /// The page; `cursor`: the members after a previous page's last one.
    async fn organisation_page(
        &self,
        browser: &Browser,
        done: Option<&str>,
        cursor: Option<&str>,
        failure: Option<Failure<'_>>,
    ) -> Response {
        let me = self.api.get(browser, "/v1/me").await;
        if me.status == StatusCode::UNAUTHORIZED {
            return self.resume_or_login(browser);
        }
        let org = self.api.get(browser, "/v1/orgs/current").await;
        let members_path = match cursor {
            Some(c) => format!("/v1/users?{}", serde_urlencoded::to_string([("cursor", c)]).unwrap_or_default()),
            None => "/v1/users".to_string(),
        };
        let members = self.api.get(browser, &members_path).await;
        // The API's `link: <…cursor=X…>; rel="next"`, as this page's own "more" link.
        let next = members.headers.get("link").and_then(|v| v.to_str().ok()).and_then(|l| {
            let q = l.split_once('?')?.1.split('>').next()?;
            serde_urlencoded::from_str::<Vec<(String, String)>>(q).ok()?.into_iter().find(|(k, _)| k == "cursor").map(|(_, v)| v)
        });
        let apps = self.api.get(browser, "/v1/clients").await;
        let invitations = self.api.get(browser, "/v1/invitations").await;
        let events = self.api.get(browser, "/v1/audit?limit=25").await;
        // (Without an id the organisation's own answer is the page's error, checked first below.)
        let auth = self.api.get(browser, &format!("/v1/orgs/{}/auth", org.str("id").unwrap_or("current"))).await;
        let connections = self.api.get(browser, &format!("/v1/orgs/{}/connections", org.str("id").unwrap_or("current"))).await;
        // Webhooks turned off on this server: no section (the API says 404 webhooks_disabled).
        let webhooks = Some(self.api.get(browser, "/v1/webhooks").await).filter(|r| r.status != StatusCode::NOT_FOUND);
        let replies = [
            Some(&me),
            Some(&org),
            Some(&members),
            Some(&apps),
            Some(&invitations),
            Some(&events),
            Some(&auth),
            Some(&connections),
            webhooks.as_ref(),
        ];
        for reply in replies.into_iter().flatten() {
            if !reply.ok() {
                return self.error_page(Failure::Api(reply));
            }
        }
        // Roles to offer: the tenant roles, the platform roles in the operator organisation, and
        // whatever a member holds now (so it can be taken away).
        let mut roles: Vec<String> = self.app.cfg.roles.tenant.clone();
        if org.str("id") == Some(self.app.cfg.platform.operator_org.as_str()) {
            roles.extend(PLATFORM_ROLES.iter().map(|r| r.to_string()));
        }
        for m in members.body.as_array().into_iter().flatten() {
            for r in m.get("roles").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str) {
                if !roles.iter().any(|x| x == r) {
                    roles.push(r.to_string());
                }
            }
        }
        let mut ctx = self.ctx("Your organisation", &self.session_csrf(browser));
        ctx.insert("org".into(), org.body.clone());
        ctx.insert("me".into(), me.body.clone());
        ctx.insert("members".into(), members.body.clone());
        ctx.insert("apps".into(), apps.body.clone());
        ctx.insert("invitations".into(), invitations.body.clone());
        ctx.insert("events".into(), json!(activity(&events.body, &members.body)));
        ctx.insert("webhooks".into(), webhooks.map_or(Value::Null, |w| w.body.clone()));
        ctx.insert("auth".into(), auth.body.clone());
        ctx.insert("dns_verification".into(), json!(self.app.cfg.domains.dns_verification));
        ctx.insert("connections".into(), connections.body.clone());
        ctx.insert("sso_redirect_uri".into(), json!(crate::federation::redirect_uri(&self.app)));
        ctx.insert("next".into(), json!(next));
        ctx.insert("roles".into(), json!(roles));
        ctx.insert("notice".into(), json!(notice(done)));
        self.html("organisation.html", ctx, Vec::new(), failure)
    }
}

/// The audit events as the page lists them: who and to whom by a member's address where the id
/// is a member of this page, else by kind and id.
fn activity(events: &Value, members: &Value) -> Vec<Value> {
    let email_of = |id: &str| {
        members
            .as_array()
            .into_iter()
            .flatten()
            .find(|m| m.get("id").and_then(Value::as_str) == Some(id))
            .and_then(|m| m.get("email"))
            .cloned()
    };
    let label = |kind: Option<&str>, id: Option<&str>| -> Value {
        match (kind, id) {
            (_, Some(id)) => email_of(id).unwrap_or_else(|| json!(format!("{} {id}", kind.unwrap_or("")).trim().to_string())),
            (Some(kind), None) => json!(kind),
            (None, None) => json!(""),
        }
    };
    events
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let s = |k: &str| e.get(k).and_then(Value::as_str);
            json!({
                "at": e.get("at"),
                "action": s("action"),
                "actor": label(s("actor_type"), s("actor_id")),
                "target": label(s("target_type"), s("target_id")),
                "ip": s("ip"),
            })
        })
        .collect()
}

#[derive(serde::Deserialize, Default)]
pub struct DoneQuery {
    done: Option<String>,
    cursor: Option<String>,
}

pub async fn page(State(pages): State<PagesState>, axum::extract::Query(q): axum::extract::Query<DoneQuery>, browser: Browser) -> Response {
    pages.organisation_page(&browser, q.done.as_deref(), q.cursor.as_deref(), None).await
}

pub async fn set_roles(State(pages): State<PagesState>, Path(id): Path<String>, browser: Browser, form: Form) -> Response {
    let body = json!({ "roles": form.all("roles") });
    on_item(&pages, &browser, &form, &id, "no such member", Method::PUT, &format!("/v1/users/{id}/roles"), Some(body), "roles_changed")
        .await
}

pub async fn disable(State(pages): State<PagesState>, Path(id): Path<String>, browser: Browser, form: Form) -> Response {
    on_item(&pages, &browser, &form, &id, "no such member", Method::POST, &format!("/v1/users/{id}/disable"), None, "member_disabled").await
}

/// Registers an app of the OpenID Connect provider through the API, then shows its client id
/// and secret once.
pub async fn register_app(State(pages): State<PagesState>, browser: Browser, form: Form) -> Response {
    let uris: Vec<&str> = form.get("redirect_uris").unwrap_or("").lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let body = json!({
        "name": form.get("name").unwrap_or("").trim(),
        "redirect_uris": uris,
        "public": form.get("public") == Some("1"),
        "first_party": form.get("first_party") == Some("1"),
    });
    match pages.act(&browser, &form, Method::POST, "/v1/clients", Some(body)).await {
        Ok(reply) if reply.ok() => {
            let mut ctx = pages.ctx("Your new app", "");
            ctx.insert("app".into(), reply.body.clone());
            ctx.insert("issuer".into(), json!(pages.app.issuer()));
            pages.html("app_created.html", ctx, Vec::new(), None)
        }
        Ok(reply) => pages.organisation(&browser, None, Some(Failure::Api(&reply))).await,
        Err(resp) => resp,
    }
}

/// Registers a webhook through the API, then shows its signing secret once.
pub async fn register_webhook(State(pages): State<PagesState>, browser: Browser, form: Form) -> Response {
    let actions: Vec<&str> = form.get("actions").unwrap_or("").split([',', ' ', '\n']).map(str::trim).filter(|a| !a.is_empty()).collect();
    let body = json!({ "url": form.get("url").unwrap_or("").trim(), "actions": actions });
    match pages.act(&browser, &form, Method::POST, "/v1/webhooks", Some(body)).await {
        Ok(reply) if reply.ok() => {
            let mut ctx = pages.ctx("Your new webhook", "");
            ctx.insert("webhook".into(), reply.body.clone());
            let mut resp = pages.html("webhook_created.html", ctx, Vec::new(), None);
            resp.headers_mut().insert(axum::http::header::CACHE_CONTROL, axum::http::HeaderValue::from_static("no-store"));
            resp
        }
        Ok(reply) => pages.organisation(&browser, None, Some(Failure::Api(&reply))).await,
        Err(resp) => resp,
    }
}

pub async fn delete_webhook(State(pages): State<PagesState>, Path(id): Path<String>, browser: Browser, form: Form) -> Response {
    on_item(&pages, &browser, &form, &id, "no such webhook", Method::DELETE, &format!("/v1/webhooks/{id}"), None, "webhook_deleted").await
}

/// An identity provider added through the API (which reads its discovery document).
pub async fn add_connection(State(pages): State<PagesState>, browser: Browser, form: Form) -> Response {
    let text = |k: &str| form.get(k).map(str::trim).filter(|v| !v.is_empty());
    let body = if text("kind") == Some("saml") {
        json!({
            "kind": "saml",
            "name": text("name").unwrap_or(""),
            "saml": { "metadata": text("saml_metadata") },
            "roles": form.all("roles"),
            "create_accounts": form.get("create_accounts").is_some(),
        })
    } else {
        json!({
        "kind": text("kind").unwrap_or("oidc"),
        "name": text("name").unwrap_or(""),
        "issuer": text("issuer"),
        "client_id": text("client_id").unwrap_or(""),
        "client_secret": text("client_secret"),
        "tenants": text("tenants").unwrap_or("").split_whitespace().collect::<Vec<_>>(),
        "roles": form.all("roles"),
        "create_accounts": form.get("create_accounts").is_some(),
        })
    };
    let Some(path) = pages.org_path(&browser, "connections").await else { return pages.organisation(&browser, None, None).await };
    admin_action(&pages, &browser, &form, Method::POST, &path, Some(body), "connection_added").await
}

pub async fn remove_connection(State(pages): State<PagesState>, Path(id): Path<String>, browser: Browser, form: Form) -> Response {
    let Some(path) = pages.org_path(&browser, "connections").await else { return pages.organisation(&browser, None, None).await };
    on_item(&pages, &browser, &form, &id, "no such identity provider", Method::DELETE, &format!("{path}/{id}"), None, "connection_removed")
        .await
}

pub async fn revoke_app(State(pages): State<PagesState>, Path(id): Path<String>, browser: Browser, form: Form) -> Response {
    on_item(&pages, &browser, &form, &id, "no such app", Method::DELETE, &format!("/v1/clients/{id}"), None, "app_client_revoked").await
}

/// An admin action on one member, invitation or app: an id that cannot be one is "not found"
/// before anything is asked of the API.
#[allow(clippy::too_many_arguments)]
async fn on_item(
    pages: &super::Pages,
    browser: &Browser,
    form: &Form,
    id: &str,
    what: &'static str,
    method: Method,
    path: &str,
    body: Option<Value>,
    done: &str,
) -> Response {
    if !super::account::valid_id(id) {
        return pages.organisation(browser, None, Some(Failure::Page(StatusCode::NOT_FOUND, "not_found", what))).await;
    }
    admin_action(pages, browser, form, method, path, body, done).await
}

/// One admin action through the API on a path of ours, then the page with `done`.
async fn admin_action(
    pages: &super::Pages,
    browser: &Browser,
    form: &Form,
    method: Method,
    path: &str,
    body: Option<Value>,
    done: &str,
) -> Response {
    match pages.act(browser, form, method, path, body).await {
        Ok(reply) if reply.ok() => pages.redirect(&pages.path(&format!("/organisation?done={done}")), Vec::new()),
        Ok(reply) => pages.organisation(browser, None, Some(Failure::Api(&reply))).await,
        Err(resp) => resp,
    }
}

pub async fn invite(State(pages): State<PagesState>, browser: Browser, form: Form) -> Response {
    let body = json!({ "email": form.get("email").unwrap_or("").trim(), "roles": form.all("roles") });
    admin_action(&pages, &browser, &form, Method::POST, "/v1/invitations", Some(body), "invitation_sent").await
}

pub async fn cancel_invitation(State(pages): State<PagesState>, Path(id): Path<String>, browser: Browser, form: Form) -> Response {
    on_item(
        &pages,
        &browser,
        &form,
        &id,
        "no such invitation",
        Method::DELETE,
        &format!("/v1/invitations/{id}"),
        None,
        "invitation_cancelled",
    )
    .await
}

/// The organisation's sign-in rules, through the API (which checks them).
pub async fn set_auth(State(pages): State<PagesState>, browser: Browser, form: Form) -> Response {
    let body = json!({ "methods": form.all("methods"), "mfa_required": form.get("mfa_required") == Some("1") });
    let Some(path) = pages.org_path(&browser, "auth").await else { return pages.organisation(&browser, None, None).await };
    admin_action(&pages, &browser, &form, Method::PUT, &path, Some(body), "auth_saved").await
}

pub async fn add_domain(State(pages): State<PagesState>, browser: Browser, form: Form) -> Response {
    let body = json!({ "domain": form.get("domain").unwrap_or("").trim() });
    let Some(path) = pages.org_path(&browser, "domains").await else { return pages.organisation(&browser, None, None).await };
    admin_action(&pages, &browser, &form, Method::POST, &path, Some(body), "domain_added").await
}

/// The domain's TXT record checked by the API: verified, or why not (shown on the page).
pub async fn check_domain(State(pages): State<PagesState>, browser: Browser, form: Form) -> Response {
    on_domain(&pages, &browser, &form, Method::POST, "/verify", "domain_verified").await
}

pub async fn remove_domain(State(pages): State<PagesState>, browser: Browser, form: Form) -> Response {
    on_domain(&pages, &browser, &form, Method::DELETE, "", "domain_removed").await
}

/// An admin action on the form's domain of the session's organisation (`…/domains/{domain}{rest}`):
/// a name that cannot be a domain is "not found" before anything is asked of the API.
async fn on_domain(pages: &super::Pages, browser: &Browser, form: &Form, method: Method, rest: &str, done: &str) -> Response {
    let domain = crate::org_auth::normalize_domain(form.get("domain").unwrap_or(""));
    let (Some(domain), Some(path)) = (domain, pages.org_path(browser, "domains").await) else {
        return pages.organisation(browser, None, Some(Failure::Page(StatusCode::NOT_FOUND, "not_found", "no such domain"))).await;
    };
    admin_action(pages, browser, form, method, &format!("{path}/{domain}{rest}"), None, done).await
}

impl super::Pages {
    /// `/v1/orgs/{the session's organisation}/{rest}`.
    async fn org_path(&self, browser: &Browser, rest: &str) -> Option<String> {
        let org = self.api.get(browser, "/v1/orgs/current").await;
        let id = org.str("id").filter(|id| super::account::valid_id(id))?;
        Some(format!("/v1/orgs/{id}/{rest}"))
    }
}

pub async fn enable(State(pages): State<PagesState>, Path(id): Path<String>, browser: Browser, form: Form) -> Response {
    on_item(&pages, &browser, &form, &id, "no such member", Method::POST, &format!("/v1/users/{id}/enable"), None, "member_enabled").await
}
