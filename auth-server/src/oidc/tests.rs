//! The authorization request's rules, PKCE and redirect URIs, at their boundaries.

use super::*;

fn client(public: bool) -> Client {
    Client::for_tests(public)
}

fn params(extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut p: Vec<(String, String)> = [
        ("client_id", "cli_app"),
        ("redirect_uri", "https://app.example.com/cb"),
        ("response_type", "code"),
        ("scope", "openid email"),
        ("state", "s1"),
        ("code_challenge", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"),
        ("code_challenge_method", "S256"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (k, v) in extra {
        p.retain(|(name, _)| name != k);
        if !v.is_empty() {
            p.push((k.to_string(), v.to_string()));
        }
    }
    p
}

fn parse(extra: &[(&str, &str)]) -> Result<AuthRequest, AuthError> {
    AuthRequest::parse(&params(extra), Some(&client(false)), 1000)
}

#[test]
fn a_good_request_parses() {
    let r = parse(&[]).unwrap();
    assert_eq!(r.scope, vec!["openid", "email"]);
    assert_eq!(r.state.as_deref(), Some("s1"));
    assert!(!r.prompt_none && !r.prompt_login);
}

#[test]
fn errors_before_the_redirect_uri_is_trusted_are_shown_not_redirected() {
    assert!(matches!(AuthRequest::parse(&params(&[]), None, 0), Err(AuthError::Page("invalid_client", _))));
    for uri in [
        "https://app.example.com/cb/",
        "https://app.example.com/cb?x=1",
        "https://app.example.com/cb/../cb",
        "https://app.example.com/c",
        "https://app.example.com/cbx",
        "https://APP.example.com/cb",
        "https://app.example.com.evil.example/cb",
        "",
    ] {
        assert!(matches!(parse(&[("redirect_uri", uri)]), Err(AuthError::Page(..))), "{uri:?}");
    }
    let mut twice = params(&[]);
    twice.push(("redirect_uri".into(), "https://evil.example/cb".into()));
    assert!(matches!(AuthRequest::parse(&twice, Some(&client(false)), 0), Err(AuthError::Page("invalid_request", _))));
    // Any other parameter repeated with an unregistered redirect URI: still a page, never a
    // redirect to that URI.
    let mut state_twice = params(&[("redirect_uri", "https://evil.example/cb")]);
    state_twice.push(("state".into(), "again".into()));
    assert!(matches!(AuthRequest::parse(&state_twice, Some(&client(false)), 0), Err(AuthError::Page("invalid_redirect_uri", _))));
    let mut good_twice = params(&[]);
    good_twice.push(("state".into(), "again".into()));
    assert!(matches!(AuthRequest::parse(&good_twice, Some(&client(false)), 0), Err(AuthError::Redirect("invalid_request", _))));
}

#[test]
fn errors_after_it_go_back_to_the_client() {
    for (extra, code) in [
        (vec![("response_type", "token")], "unsupported_response_type"),
        (vec![("response_type", "")], "unsupported_response_type"),
        (vec![("scope", "openid admin")], "invalid_scope"),
        (vec![("code_challenge_method", "plain")], "invalid_request"),
        (vec![("code_challenge_method", "")], "invalid_request"),
        (vec![("code_challenge", "short")], "invalid_request"),
        (vec![("code_challenge", ""), ("code_challenge_method", "")], "invalid_request"),
        (vec![("prompt", "none login")], "invalid_request"),
        (vec![("prompt", "bogus")], "invalid_request"),
        (vec![("max_age", "-1")], "invalid_request"),
        (vec![("max_age", "+5")], "invalid_request"),
        (vec![("request", "eyJ")], "request_not_supported"),
        (vec![("response_mode", "fragment")], "invalid_request"),
    ] {
        assert_eq!(
            parse(&extra),
            Err(AuthError::Redirect(
                code,
                match parse(&extra) {
                    Err(AuthError::Redirect(_, m)) => m,
                    _ => "",
                }
            )),
            "{extra:?}"
        );
    }
    let long = "x".repeat(1025);
    assert!(matches!(parse(&[("state", &long)]), Err(AuthError::Redirect("invalid_request", _))));
}

#[test]
fn pkce_is_required_for_public_clients_whatever_the_setting() {
    let mut public = client(true);
    public.require_pkce = false;
    let p = params(&[("code_challenge", ""), ("code_challenge_method", "")]);
    assert!(matches!(AuthRequest::parse(&p, Some(&public), 0), Err(AuthError::Redirect("invalid_request", _))));
    let mut relaxed = client(false);
    relaxed.require_pkce = false;
    assert!(AuthRequest::parse(&p, Some(&relaxed), 0).unwrap().code_challenge.is_none());
}

#[test]
fn prompt_login_and_max_age_need_a_fresh_sign_in() {
    let mut r = parse(&[("prompt", "login")]).unwrap();
    assert!(!r.session_fresh_enough("s0", 999, 1005));
    assert!(r.session_fresh_enough("s1", 1000, 1005));
    r.session_to_replace = Some("s0".into());
    assert!(!r.session_fresh_enough("s0", 1000, 1005), "the session present at the request never satisfies prompt=login");
    assert!(r.session_fresh_enough("s1", 1000, 1005));
    let r = parse(&[("max_age", "60")]).unwrap();
    assert!(r.session_fresh_enough("s0", 950, 1010));
    assert!(!r.session_fresh_enough("s0", 900, 1010));
    assert!(r.session_fresh_enough("s0", 1001, 2000), "signed in after the request: fresh whatever max_age");
    let r = parse(&[("prompt", "select_account")]).unwrap();
    assert!(r.prompt_login);
}

#[test]
fn pkce_s256_matches_rfc_7636_appendix_b() {
    let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    assert!(pkce_matches(verifier, challenge));
    assert!(!pkce_matches("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXj", challenge));
    assert!(!pkce_matches(challenge, challenge), "the challenge itself is not a verifier");
    assert!(!pkce_matches(&verifier[..42], challenge), "42 characters is too short");
    assert!(!pkce_matches(&"a".repeat(129), challenge), "129 characters is too long");
    assert!(!pkce_matches("dBjftJeZ4CVP+mB92K27uhbUJU1p1r/wW1gFWFOEjXk", challenge));
}

#[test]
fn redirect_uris_at_registration() {
    for good in
        ["https://app.example.com/cb", "http://127.0.0.1:8000/cb", "http://localhost/cb", "http://[::1]:3000/cb", "com.example.app:/oauth"]
    {
        assert_eq!(check_redirect_uri(good), Ok(()), "{good}");
    }
    for bad in [
        "http://app.example.com/cb",
        "https://app.example.com/cb#frag",
        "https://user@app.example.com/cb",
        "javascript:alert(1)//.x",
        "data:text/html,x",
        "myapp:/cb",
        "/relative",
        "https://app.example.com/a b",
    ] {
        assert!(check_redirect_uri(bad).is_err(), "{bad}");
    }
}

#[test]
fn the_redirect_back_keeps_the_registered_query() {
    assert_eq!(with_query("https://a.example/cb", &[("code", "x y"), ("state", "&")]), "https://a.example/cb?code=x+y&state=%26");
    assert_eq!(with_query("https://a.example/cb?tenant=1", &[("code", "c")]), "https://a.example/cb?tenant=1&code=c");
}
