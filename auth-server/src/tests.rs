//! In-process checks: what the server issues verifies in auth-core, the gateways' verifier
//! (access tokens against the published JWKS, API keys against the HMAC ring, the signed
//! revocation feed); revocation cut-offs cover tokens minted by replicas whose clocks run
//! ahead; the files the server writes are private.

use auth_core::{Decision, Gateway, MaterialEvent, Request, Source, UnixTime};
use serde_json::json;

use crate::app::App;
use crate::config::Config;
use crate::db::now;
use crate::sessions::{self, SessionMeta};

fn decide(gw: &mut Gateway, headers: &[(&str, &str)]) -> Decision {
    gw.decide(&Request { method: "GET", path: "/api/x", headers }, UnixTime::from_secs(now()), "test")
}

/// Hands a feed to the gateway as a host does; it must be applied.
fn apply_feed(gw: &mut Gateway, jws: &str) {
    let t = UnixTime::from_secs(now());
    gw.apply_material(Source::Revocations, jws.as_bytes(), t, t);
    let event = gw.poll_event();
    assert!(matches!(event, Some(MaterialEvent::Applied { .. })), "{event:?}");
    while gw.poll_event().is_some() {}
}

async fn test_app() -> (crate::app::AppState, std::path::PathBuf) {
    test_app_with(|_| {}).await
}

/// A server on SQLite in a fresh directory (ephemeral state in the database), with `change` made
/// to its configuration first.
pub(crate) async fn test_app_with(change: impl FnOnce(&mut Config)) -> (crate::app::AppState, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("authgate-unit-{}", crate::crypto::random_id128()));
    let mut cfg = Config::default();
    cfg.data_dir = dir.clone();
    cfg.passwords.argon2_memory_kib = 64;
    cfg.passwords.argon2_iterations = 1;
    change(&mut cfg);
    (App::build(cfg, None).await.unwrap(), dir)
}

/// The emails in the outbox, once there is at least one (the mailer writes them from a queue),
/// or none after two seconds.
pub(crate) async fn outbox_mails(app: &App) -> Vec<String> {
    let outbox = app.cfg.outbox_dir();
    let read = || -> Vec<String> {
        std::fs::read_dir(&outbox).map(|d| d.filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok()).collect()).unwrap_or_default()
    };
    for _ in 0..100 {
        let mails = read();
        if !mails.is_empty() {
            return mails;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    Vec::new()
}

pub(crate) async fn insert_user(app: &App, id: &str, email: &str) -> crate::users::User {
    sqlx::query("INSERT INTO users (id, email, org_id, password_hash, status, mfa, created_at, password_changed_at) VALUES ($1, $2, 'org_default', 'x', 'active', 'none', $3, $3)")
        .bind(id)
        .bind(email)
        .bind(now())
        .execute(&app.db)
        .await
        .unwrap();
    sqlx::query("INSERT INTO memberships (user_id, org_id, created_at) VALUES ($1, 'org_default', $2)")
        .bind(id)
        .bind(now())
        .execute(&app.db)
        .await
        .unwrap();
    crate::users::by_id(&app.db, id).await.unwrap().unwrap()
}

/// An access token signed as a replica whose clock reads `iat` would sign it.
fn token_with_iat(app: &App, user: &crate::users::User, iat: i64) -> String {
    let keys = app.keys.get();
    let key = keys.current(now()).unwrap();
    let claims = auth_core::formats::AccessTokenClaims {
        iss: app.cfg.public_url.clone(),
        aud: app.cfg.tokens.audience.clone(),
        sub: user.id.clone(),
        exp: iat + 600,
        iat,
        nbf: None,
        jti: crate::crypto::random_id128(),
        sid: None,
        org: Some(user.home_org.clone()),
        email: Some(user.email.clone()),
        roles: Vec::new(),
        scope: None,
        amr: vec!["pwd".into()],
        client_id: None,
    };
    key.key.sign_jws(auth_core::formats::ACCESS_TOKEN_TYP, &claims)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasing_covers_tokens_of_replicas_whose_clock_runs_ahead() {
    let (app, dir) = test_app().await;
    let user = insert_user(&app, "usr_skew", "skew@example.com").await;
    // Minted just before the erasure: one in this second, one by a replica whose clock runs a
    // few seconds ahead of the database's (within tokens.max_clock_skew_s).
    let same_second = token_with_iat(&app, &user, now());
    let ahead = token_with_iat(&app, &user, now() + app.cfg.tokens.max_clock_skew_s);
    for t in [&same_second, &ahead] {
        sessions::verify_access(&app, t).await.expect("valid before the erasure");
    }
    let erased = crate::http::users::remove_member(&app, &user.id, "org_default", crate::audit::Who::Operator).await.unwrap();
    assert!(matches!(erased, Some(crate::http::users::Removal::Erased(_))));
    for t in [&same_second, &ahead] {
        assert_eq!(sessions::verify_access(&app, t).await.unwrap_err().code, "subject_revoked");
    }
    drop(app);
    let _ = std::fs::remove_dir_all(dir);
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let (app, dir) = test_app().await;
    app.mailer.send("someone@example.com", "Your code", "123456".into());
    let outbox = app.cfg.outbox_dir();
    let mut eml = None;
    for _ in 0..200 {
        eml = std::fs::read_dir(&outbox).unwrap().flatten().map(|e| e.path()).find(|p| p.extension().is_some_and(|x| x == "eml"));
        if eml.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).permissions().mode() & 0o777;
    for d in [dir.clone(), outbox.clone()] {
        assert_eq!(mode(&d), 0o700, "{}", d.display());
    }
    let db = dir.join("authgate.db");
    let files =
        [db.clone(), dir.join("authgate.db-wal"), dir.join("authgate.db-shm"), dir.join("master.key"), eml.expect("an outbox email")];
    for f in files {
        assert_eq!(mode(&f), 0o600, "{}", f.display());
    }
    drop(app);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issued_credentials_and_feed_verify_in_auth_core() {
    let (app, dir) = test_app().await;
    insert_user(&app, "usr_1", "a@example.com").await;
    sqlx::query("INSERT INTO member_roles (user_id, org_id, role) VALUES ('usr_1', 'org_default', 'reader')")
        .execute(&app.db)
        .await
        .unwrap();
    let user = crate::users::by_id(&app.db, "usr_1").await.unwrap().unwrap();
    let issued = sessions::create(
        &app,
        &user,
        "org_default",
        vec!["pwd".into()],
        SessionMeta { user_agent: None, ip: None, cookie_mode: false, client: None },
    )
    .await
    .unwrap();
    let (claims, key_id, secret) =
        crate::http::apikeys::insert_key(&app, "usr_1", Some("usr_1"), Some("org_default"), "k", vec!["reader".into()], None)
            .await
            .unwrap();

    let config = json!({
        "providers": [{"issuer": app.cfg.public_url, "audiences": ["api"], "jwks": serde_json::from_str::<serde_json::Value>(&app.keys.get().jwks_body).unwrap(), "typ": ["at+jwt"]}],
        "api_keys": {"hmac_keys": [{"kid": app.hmac_keys[0].0, "secret": auth_core::b64::encode(&app.hmac_keys[0].1)}]},
        "revocations": {"uri": format!("{}/v1/revocations", app.cfg.public_url)},
        "routes": [{"prefix": "/api", "require": {"any_role": ["reader"]}}]
    });
    let mut gw = Gateway::from_json(config.to_string().as_bytes()).unwrap();
    // Until a feed covers the key's iat, the gateway refuses it.
    let feed = app.revs.feed(&app.keys.get()).await.unwrap();
    apply_feed(&mut gw, &feed.jws);
    let bearer = format!("Bearer {}", issued.access_token);
    match decide(&mut gw, &[("authorization", &bearer)]) {
        Decision::Allow(a) => assert_eq!(a.identity.unwrap().session_id.as_deref(), Some(issued.session_id.as_str())),
        Decision::Deny(d) => panic!("token refused: {}", d.code),
    }
    while now() <= claims.iat {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let feed = app.revs.feed(&app.keys.get()).await.unwrap();
    apply_feed(&mut gw, &feed.jws);
    let key_headers = [("x-api-key", key_id.as_str()), ("x-api-secret", secret.as_str())];
    assert!(decide(&mut gw, &key_headers).is_allow(), "a verified key is usable once the watermark covers it");

    sessions::revoke_session(&app, &issued.session_id, "test", crate::audit::Who::Operator).await.unwrap();
    crate::http::apikeys::revoke_key(&app, &claims.id, crate::audit::Who::Operator).await.unwrap();
    let feed2 = app.revs.feed(&app.keys.get()).await.unwrap();
    assert!(feed2.ver > feed.ver);
    apply_feed(&mut gw, &feed2.jws);
    match decide(&mut gw, &[("authorization", &bearer)]) {
        Decision::Deny(d) => assert_eq!(d.code.as_str(), "session_revoked"),
        Decision::Allow(_) => panic!("revoked session allowed"),
    }
    match decide(&mut gw, &key_headers) {
        Decision::Deny(d) => assert_eq!(d.code.as_str(), "api_key_revoked"),
        Decision::Allow(_) => panic!("revoked key allowed"),
    }
    drop(app);
    let _ = std::fs::remove_dir_all(dir);
}

/// The retention sweep drops exactly the events older than `audit.retention_days`.
#[tokio::test]
async fn audit_retention_drops_only_expired_events() {
    use crate::audit::{Action, Event, Filter, Who};
    let (app, dir) = test_app().await;
    // (Ids order events by microsecond: written apart, they list in the order written.)
    for org in ["org_old", "org_edge", "org_new"] {
        Event::new(Action::OrgCreated, Some(org), Who::Operator).write_alone(&app.db).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    }
    let day = 86400;
    for (org, age) in [("org_old", 30 * day + 5), ("org_edge", 30 * day - 60)] {
        sqlx::query("UPDATE audit_events SET at = $1 WHERE org_id = $2").bind(now() - age).bind(org).execute(&app.db).await.unwrap();
    }
    assert_eq!(crate::audit::prune(&app.db, 30).await.unwrap(), 1);
    let left: Vec<String> = crate::audit::read(&app.db, &Filter::default(), 10)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|e| e.org_id)
        .filter(|o| o.starts_with("org_old") || o.starts_with("org_edge") || o.starts_with("org_new"))
        .collect();
    assert_eq!(left, ["org_new", "org_edge"], "newest first, the expired one gone");
    drop(app);
    let _ = std::fs::remove_dir_all(dir);
}
