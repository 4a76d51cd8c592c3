//! Sessions at their edges: what an access token says, rotation and reuse detection, every
//! reason a refresh is refused (and which refusals leave the token usable), a client's
//! session, the lifetimes' bounds, revoking all but one.

use serde_json::Value;

use super::*;
use crate::audit::Who;
use crate::oidc::Client;
use crate::tests::{insert_user, outbox_mails, test_app_with};

fn login() -> SessionMeta<'static> {
    SessionMeta { user_agent: Some("test agent"), ip: Some("192.0.2.1"), cookie_mode: false, client: None }
}

fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&auth_core::b64::decode(payload.as_bytes()).unwrap()).unwrap()
}

async fn sql(app: &App, statement: &str, bind: &str) {
    sqlx::query(statement).bind(bind).execute(&app.db).await.unwrap();
}

/// A user of `org_default` with two roles.
async fn member(app: &App, id: &str) -> User {
    let user = insert_user(app, id, &format!("{id}@example.com")).await;
    for role in ["reader", "admin"] {
        sqlx::query("INSERT INTO member_roles (user_id, org_id, role) VALUES ($1, 'org_default', $2)")
            .bind(id)
            .bind(role)
            .execute(&app.db)
            .await
            .unwrap();
    }
    user
}

fn code<T: std::fmt::Debug>(r: Result<T, ApiError>) -> &'static str {
    r.unwrap_err().code
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_rotates_and_a_spent_token_revokes_the_session_once() {
    let (app, dir) = test_app_with(|_| {}).await;
    let user = member(&app, "usr_rot").await;
    let first = create(&app, &user, "org_default", vec!["pwd".into(), "otp".into()], login()).await.unwrap();
    let c = claims(&first.access_token);
    assert_eq!(
        (c["sub"].as_str(), c["sid"].as_str(), c["org"].as_str()),
        (Some("usr_rot"), Some(first.session_id.as_str()), Some("org_default"))
    );
    assert_eq!(c["email"], "usr_rot@example.com");
    assert_eq!(c["roles"], serde_json::json!(["admin", "reader"]));
    assert_eq!(c["amr"], serde_json::json!(["pwd", "otp"]));
    assert!(c.get("client_id").is_none() && c.get("scope").is_none());
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), app.cfg.tokens.access_ttl_s);
    assert_eq!((first.token_type, first.expires_in), ("Bearer", app.cfg.tokens.access_ttl_s));

    let second = refresh(&app, &first.refresh_token, None).await.unwrap();
    assert_ne!(second.refresh_token, first.refresh_token);
    assert_eq!(second.session_id, first.session_id);
    let c2 = claims(&second.access_token);
    assert_eq!((&c2["sid"], &c2["roles"], &c2["amr"], &c2["email"]), (&c["sid"], &c["roles"], &c["amr"], &c["email"]));
    assert_ne!(c2["jti"], c["jti"]);
    verify_access(&app, &second.access_token).await.expect("the refreshed access token verifies");

    // The first token again: someone holds a copy. The session is revoked, its owner told once.
    assert_eq!(code(refresh(&app, &first.refresh_token, None).await), "refresh_token_reused");
    let (revoked, reason): (Option<i64>, Option<String>) = sqlx::query_as("SELECT revoked_at, revoked_reason FROM sessions WHERE id = $1")
        .bind(&first.session_id)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert!(revoked.is_some());
    assert_eq!(reason.as_deref(), Some("refresh_token_reuse"));
    assert_eq!(code(refresh(&app, &second.refresh_token, None).await), "session_revoked");
    assert_eq!(code(refresh(&app, &first.refresh_token, None).await), "refresh_token_reused");
    assert_eq!(outbox_mails(&app).await.len(), 1, "one notice for one revocation");
    // Its access tokens are listed by sid.
    assert_eq!(code(verify_access(&app, &second.access_token).await), "session_revoked");
    let events: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_events WHERE action = 'session.refresh_reused' AND target_id = $1")
        .bind(&first.session_id)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(events, 1);
    drop(app);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_that_leave_the_token_usable() {
    let (app, dir) = test_app_with(|_| {}).await;
    let user = member(&app, "usr_ref").await;
    let issued = create(&app, &user, "org_default", vec!["pwd".into()], login()).await.unwrap();
    let token = issued.refresh_token.as_str();
    for bad in ["", "rt_", "xx_unknown", &format!("rt_{}", "a".repeat(98)), &token.replacen("rt_", "rT_", 1)] {
        assert_eq!(code(refresh(&app, bad, None).await), "invalid_refresh_token", "{bad:?}");
    }
    // Another client's endpoint: not this token's caller.
    assert_eq!(code(refresh(&app, token, Some(&Client::for_tests(false))).await), "invalid_refresh_token");
    // Expired (its last second included), the session expired, revoked by someone, the account
    // or the membership disabled: refused, and once mended the same token still works.
    let now_s = now().to_string();
    let cases: [(&str, &str, &str, &str); 4] = [
        (
            "UPDATE refresh_tokens SET expires_at = CAST($1 AS INTEGER)",
            "UPDATE refresh_tokens SET expires_at = expires_at + 100000",
            "invalid_refresh_token",
            &now_s,
        ),
        (
            "UPDATE sessions SET expires_at = CAST($1 AS INTEGER)",
            "UPDATE sessions SET expires_at = expires_at + 100000",
            "session_expired",
            &now_s,
        ),
        ("UPDATE users SET status = $1", "UPDATE users SET status = 'active'", "account_disabled", "disabled"),
        (
            "UPDATE memberships SET disabled_at = CAST($1 AS INTEGER)",
            "UPDATE memberships SET disabled_at = NULL",
            "account_disabled",
            &now_s,
        ),
    ];
    for (break_it, mend, want, bind) in cases {
        sql(&app, break_it, bind).await;
        assert_eq!(code(refresh(&app, token, None).await), want, "{break_it}");
        sqlx::query(mend).execute(&app.db).await.unwrap();
    }
    sql(&app, "UPDATE sessions SET revoked_at = CAST($1 AS INTEGER)", &now_s).await;
    assert_eq!(code(refresh(&app, token, None).await), "session_revoked");
    sqlx::query("UPDATE sessions SET revoked_at = NULL").execute(&app.db).await.unwrap();
    let next = refresh(&app, token, None).await.expect("no refusal spent the token");
    assert_eq!(next.session_id, issued.session_id);
    assert!(outbox_mails(&app).await.is_empty(), "no reuse was reported");
    drop(app);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifetimes_are_bounded_by_the_session() {
    // A refresh token outlives neither its session nor its own lifetime.
    for (refresh_ttl, session_ttl, want) in [(1000, 600, 600), (600, 1000, 600), (300, 1000, 300)] {
        let (app, dir) = test_app_with(|c| {
            c.tokens.refresh_ttl_s = refresh_ttl;
            c.tokens.session_ttl_s = session_ttl;
        })
        .await;
        let user = member(&app, "usr_ttl").await;
        let issued = create(&app, &user, "org_default", vec!["pwd".into()], login()).await.unwrap();
        assert_eq!(issued.refresh_expires_in, want, "{refresh_ttl} {session_ttl}");
        let next = refresh(&app, &issued.refresh_token, None).await.unwrap();
        assert!((want - 2..=want).contains(&next.refresh_expires_in), "{} of {want}", next.refresh_expires_in);
        let exp: i64 = sqlx::query_scalar("SELECT expires_at FROM refresh_tokens").fetch_one(&app.db).await.unwrap();
        assert!((exp - now() - next.refresh_expires_in).abs() <= 1);
        drop(app);
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clients_session_is_the_clients_alone() {
    let (app, dir) = test_app_with(|_| {}).await;
    let user = member(&app, "usr_cli").await;
    let mut client = Client::for_tests(false);
    client.access_ttl_s = Some(60);
    client.refresh_ttl_s = Some(100);
    let session = ClientSession { client: &client, scope: "read" };
    let meta = SessionMeta { client: Some(&session), ..login() };
    let issued = create(&app, &user, "org_default", vec!["pwd".into()], meta).await.unwrap();
    let c = claims(&issued.access_token);
    assert_eq!((c["client_id"].as_str(), c["scope"].as_str()), (Some("cli_app"), Some("read")));
    // A third-party app acts with its scopes, never with the person's roles.
    assert_eq!(c["roles"], serde_json::json!([]));
    assert_eq!((issued.expires_in, issued.refresh_expires_in), (60, 100));
    // Only at the token endpoint, for this client.
    assert_eq!(code(refresh(&app, &issued.refresh_token, None).await), "invalid_refresh_token");
    let mut other = Client::for_tests(false);
    other.id = "cli_other".into();
    assert_eq!(code(refresh(&app, &issued.refresh_token, Some(&other)).await), "invalid_refresh_token");
    let next = refresh(&app, &issued.refresh_token, Some(&client)).await.unwrap();
    let c = claims(&next.access_token);
    assert_eq!((c["client_id"].as_str(), c["scope"].as_str(), &c["roles"]), (Some("cli_app"), Some("read"), &serde_json::json!([])));
    assert!((99..=100).contains(&next.refresh_expires_in) && next.expires_in == 60);
    // The organisation's own first-party app carries the person's roles.
    let mut own = Client::for_tests(false);
    own.org_id = "org_default".into();
    own.first_party = true;
    let session = ClientSession { client: &own, scope: "" };
    let issued = create(&app, &user, "org_default", vec!["pwd".into()], SessionMeta { client: Some(&session), ..login() }).await.unwrap();
    let c = claims(&issued.access_token);
    assert_eq!(c["roles"], serde_json::json!(["admin", "reader"]));
    assert!(c.get("scope").is_none(), "an empty scope is left out");
    assert_eq!(issued.expires_in, app.cfg.tokens.access_ttl_s);
    drop(app);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_all_but_one() {
    let (app, dir) = test_app_with(|_| {}).await;
    let user = member(&app, "usr_all").await;
    let mut sessions = Vec::new();
    for _ in 0..3 {
        sessions.push(create(&app, &user, "org_default", vec!["pwd".into()], login()).await.unwrap());
    }
    let keep = sessions[1].session_id.clone();
    assert_eq!(revoke_all(&app, "usr_all", Some(&keep), "test", Who::Operator).await.unwrap(), 2);
    assert_eq!(code(refresh(&app, &sessions[0].refresh_token, None).await), "session_revoked");
    assert_eq!(code(refresh(&app, &sessions[2].refresh_token, None).await), "session_revoked");
    refresh(&app, &sessions[1].refresh_token, None).await.expect("the kept session");
    assert_eq!(revoke_all(&app, "usr_all", None, "test", Who::Operator).await.unwrap(), 1);
    assert_eq!(revoke_all(&app, "usr_all", None, "test", Who::Operator).await.unwrap(), 0);
    assert!(!revoke_session(&app, &keep, "test", Who::Operator).await.unwrap(), "already revoked");
    // Nothing to revoke, nothing listed in the feed.
    assert!(!revoke_session(&app, "ses_none", "test", Who::Operator).await.unwrap());
    let listed = |sid: String| {
        let app = &app;
        async move {
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM revocations WHERE kind = 'sid' AND id = $1")
                .bind(sid)
                .fetch_one(&app.db)
                .await
                .unwrap()
        }
    };
    assert_eq!(listed("ses_none".into()).await, 0);
    assert_eq!(listed(keep.clone()).await, 1);
    drop(app);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn credential_errors_answer_as_a_gateway_does() {
    let expired = credential_error(ErrorCode::TokenExpired);
    assert_eq!((expired.status, expired.code, expired.bearer), (StatusCode::UNAUTHORIZED, "token_expired", true));
    let role = credential_error(ErrorCode::InsufficientRole);
    assert_eq!((role.status, role.code, role.bearer), (StatusCode::FORBIDDEN, "insufficient_role", false));
    assert_eq!(role.message, ErrorCode::InsufficientRole.description());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_of_a_refresh_token_live_or_spent() {
    let (app, dir) = test_app_with(|_| {}).await;
    let user = member(&app, "usr_of").await;
    let issued = create(&app, &user, "org_default", vec!["pwd".into()], login()).await.unwrap();
    let sid = Some(issued.session_id.clone());
    assert_eq!(session_of_refresh(&app, &issued.refresh_token).await.unwrap(), sid);
    let next = refresh(&app, &issued.refresh_token, None).await.unwrap();
    assert_eq!(session_of_refresh(&app, &next.refresh_token).await.unwrap(), sid, "live");
    assert_eq!(session_of_refresh(&app, &issued.refresh_token).await.unwrap(), sid, "spent");
    assert_eq!(session_of_refresh(&app, "rt_unknown").await.unwrap(), None);
    drop(app);
    let _ = std::fs::remove_dir_all(dir);
}

/// Only `rt_` tokens of at most 100 bytes are looked up: a stored hash of anything else (none is
/// ever issued) is never reached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_well_formed_tokens_are_looked_up() {
    let (app, dir) = test_app_with(|_| {}).await;
    let user = member(&app, "usr_form").await;
    let issued = create(&app, &user, "org_default", vec!["pwd".into()], login()).await.unwrap();
    let longest = format!("rt_{}", "b".repeat(97));
    for planted in ["xx_planted".to_string(), format!("rt_{}", "a".repeat(98)), longest.clone()] {
        sqlx::query("INSERT INTO refresh_tokens (hash, session_id, created_at, expires_at) VALUES ($1, $2, $3, $4)")
            .bind(crypto::sha256_hex(planted.as_bytes()))
            .bind(&issued.session_id)
            .bind(now())
            .bind(now() + 600)
            .execute(&app.db)
            .await
            .unwrap();
    }
    assert_eq!(code(refresh(&app, "xx_planted", None).await), "invalid_refresh_token");
    assert_eq!(code(refresh(&app, &format!("rt_{}", "a".repeat(98)), None).await), "invalid_refresh_token", "101 bytes");
    refresh(&app, &longest, None).await.expect("100 bytes are looked up");
    drop(app);
    let _ = std::fs::remove_dir_all(dir);
}
