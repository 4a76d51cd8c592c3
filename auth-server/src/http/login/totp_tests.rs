//! TOTP codes at their edges: the window of one step either side, each step taken once and
//! never one older than the last, the same answer for accounts without a secret.

use super::*;
use crate::tests::{insert_user, test_app_with};

fn code_at(secret: &[u8], step: i64) -> String {
    totp_rs::TOTP::new(totp_rs::Algorithm::SHA1, 6, 1, 30, secret.to_vec(), Some("authgate".into()), "x@example.com".into())
        .unwrap()
        .generate(step as u64 * 30)
}

/// The current step, with at least a few seconds of it left (a test must not straddle two).
async fn fresh_step() -> i64 {
    while now() % 30 > 24 {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    now() / 30
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_step_once_within_one_step_either_side() {
    let (app, dir) = test_app_with(|_| {}).await;
    let user = insert_user(&app, "usr_totp", "totp@example.com").await;
    let secret = crypto::random_bytes(20);
    let sealed = app.master.seal(&secret, "totp:usr_totp");
    let s = fresh_step().await;
    let window: Vec<String> = [s - 1, s, s + 1].iter().map(|&t| code_at(&secret, t)).collect();
    let wrong = ["123456", "654321", "111111", "999999"].into_iter().find(|c| !window.iter().any(|w| w == c)).unwrap();
    let check = |code: String| {
        let (app, user, sealed) = (&app, &user, &sealed);
        async move { check_totp(app, Some(user), Some(sealed), &code).await.unwrap() }
    };
    assert!(!check(wrong.to_string()).await);
    assert!(!check(code_at(&secret, s - 2)).await, "two steps old");
    assert!(!check(code_at(&secret, s + 2)).await, "two steps ahead");
    assert!(check(code_at(&secret, s - 1)).await, "the step before");
    assert!(!check(code_at(&secret, s - 1)).await, "the same step twice");
    assert!(check(format!(" {}\n", code_at(&secret, s))).await, "the current step, spaces around");
    assert!(!check(code_at(&secret, s - 1)).await, "a step older than the last taken");
    assert!(check(code_at(&secret, s + 1)).await, "the step after");
    assert!(!check(code_at(&secret, s)).await);
    let last: i64 = sqlx::query_scalar("SELECT totp_last_step FROM users WHERE id = 'usr_totp'").fetch_one(&app.db).await.unwrap();
    assert_eq!(last, s + 1);
    drop(app);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_no_match() {
    let (app, dir) = test_app_with(|_| {}).await;
    let user = insert_user(&app, "usr_none", "none@example.com").await;
    // Even the dummy secret's own current code: an account without a secret never matches.
    let dummy = app.master.open(&app.dummy_totp, crate::app::DUMMY_TOTP_CONTEXT).unwrap();
    let s = fresh_step().await;
    let code = code_at(&dummy, s);
    assert!(!check_totp(&app, None, None, &code).await.unwrap());
    assert!(!check_totp(&app, Some(&user), None, &code).await.unwrap());
    // A secret sealed for another account does not open for this one.
    let other = crypto::random_bytes(20);
    let sealed = app.master.seal(&other, "totp:usr_other");
    assert!(check_totp(&app, Some(&user), Some(&sealed), &code_at(&other, s)).await.is_err());
    // Through the step: the status asked for, `invalid_code`.
    let err = totp_step(&app, &user, None, &code, StatusCode::BAD_REQUEST).await.unwrap_err();
    assert_eq!((err.status, err.code), (StatusCode::BAD_REQUEST, "invalid_code"));
    let mine = crypto::random_bytes(20);
    let sealed = app.master.seal(&mine, "totp:usr_none");
    totp_step(&app, &user, Some(&sealed), &code_at(&mine, s), StatusCode::UNAUTHORIZED).await.expect("the right code");
    drop(app);
    let _ = std::fs::remove_dir_all(dir);
}
