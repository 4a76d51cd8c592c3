//! The `authgate` binary end to end: exit codes, JSON output, field-naming config errors.

use std::process::{Command, Output};

use serde_json::Value;

fn authgate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_authgate")).args(args).output().expect("runs")
}

fn vectors() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/conformance/vectors.json");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Writes the conformance config and feed to a temp dir; returns (dir, config, feed, now).
fn fixture(name: &str) -> (std::path::PathBuf, String, String, String) {
    let v = vectors();
    let dir = std::env::temp_dir().join(format!("authgate-cli-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("gw.json");
    std::fs::write(&config, serde_json::to_vec(&v["config"]).unwrap()).unwrap();
    let feed = dir.join("feed.jws");
    std::fs::write(&feed, v["feed"].as_str().unwrap()).unwrap();
    (dir, config.display().to_string(), feed.display().to_string(), v["now"].to_string())
}

fn case_header(name: &str) -> String {
    let v = vectors();
    let case = v["cases"].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap().clone();
    let h = &case["request"]["headers"][0];
    format!("{}: {}", h[0].as_str().unwrap(), h[1].as_str().unwrap())
}

#[test]
fn verify_allows_with_identity_and_exit_0() {
    let (_dir, config, feed, now) = fixture("allow");
    let header = case_header("eddsa_valid");
    let out = authgate(&["verify", "--config", &config, "--feed", &feed, "--now", &now, "--path", "/api/items", "-H", &header]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["allow"], true);
    assert_eq!(json["status"], 200);
    assert_eq!(json["identity"]["subject"], "user-1");
    assert_eq!(json["headers"]["x-auth-subject"], "user-1");
    assert_eq!(json["headers"]["x-auth-method"], "jwt");
}

#[test]
fn verify_denies_with_code_and_exit_1() {
    let (_dir, config, feed, now) = fixture("deny");
    let header = case_header("eddsa_valid");
    let later = (now.parse::<i64>().unwrap() + 3600).to_string();
    // An hour later the token has expired: a definite 401, reported before feed staleness.
    let out = authgate(&["verify", "--config", &config, "--feed", &feed, "--now", &later, "--path", "/api/items", "-H", &header]);
    assert_eq!(out.status.code(), Some(1));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["allow"], false);
    assert_eq!(json["status"], 401);
    assert_eq!(json["code"], "token_expired");
    assert!(json["headers"]["www-authenticate"].as_str().unwrap().contains("invalid_token"));

    let out = authgate(&["verify", "--config", &config, "--feed", &feed, "--now", &now, "--path", "/admin", "-H", &header]);
    assert_eq!(out.status.code(), Some(1));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["status"], 403);
    assert_eq!(json["code"], "insufficient_role");
    assert_eq!(json["headers"]["x-error-code"], "insufficient_role");
    assert_eq!(json["headers"]["x-error-id"], "authgate-cli");
}

#[test]
fn config_check_names_the_bad_field_and_exits_2() {
    let dir = std::env::temp_dir().join(format!("authgate-cli-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cases = [
        (
            r#"{"routes":[{"prefix":"/","require":"anonymous"},{"prefix":"/a","require":"anonymous"},{"prefix":"/b","require":{"any_role":"admin"}}]}"#,
            "routes[2].require.any_role: invalid type: string \"admin\", expected array",
        ),
        (r#"{"routes":[{"prefix":"/","require":"anonymus"}]}"#, "routes[0].require: unknown variant `anonymus`"),
        (r#"{"routes":[{"prefix":"/","require":"anonymous","strip":true}]}"#, "routes[0].strip: unknown field `strip`"),
        (
            r#"{"providers":[{"issuer":"x","audiences":["a"],"jwks_uri":"ftp://x"}],"routes":[{"prefix":"/","require":"authenticated"}]}"#,
            "providers[0].jwks_uri: must be an http:// or https:// URL",
        ),
        (
            r#"{"providers":[{"issuer":"x","audiences":["a"],"jwks":{"keys":[{"kty":"OKP","crv":"Ed25519","x":"AAA"}]}}],"routes":[{"prefix":"/","require":"authenticated"}]}"#,
            "providers[0].jwks.keys[0].x: not 32 bytes",
        ),
        (
            r#"{"api_keys":{"hmac_keys":[{"kid":"k","secret":"c2hvcnQ"}]},"routes":[{"prefix":"/","require":"authenticated"}]}"#,
            "api_keys.hmac_keys[0].secret: at least 32 bytes once decoded",
        ),
        (r#"{"routes":[{"prefix":"/a/../b","require":"anonymous"}]}"#, "routes[0].prefix: must be a canonical path"),
        ("{\"routes\": [}", "routes[0]: expected value"),
    ];
    for (i, (config, want)) in cases.iter().enumerate() {
        let file = dir.join(format!("bad{i}.json"));
        std::fs::write(&file, config).unwrap();
        let out = authgate(&["config", "check", file.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "case {i}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(want), "case {i}: {stderr:?} should contain {want:?}");
    }
    let good = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/gateway.json");
    let out = authgate(&["config", "check", good]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn usage_errors_exit_2() {
    let (_dir, config, _feed, _now) = fixture("usage");
    assert_eq!(authgate(&["verify", "--config", &config, "-H", "no-colon"]).status.code(), Some(2));
    assert_eq!(authgate(&["verify", "--config", "/nonexistent/gw.json"]).status.code(), Some(2));
    assert_eq!(authgate(&["frobnicate"]).status.code(), Some(2));
}

#[test]
fn inspect_decodes_without_verifying() {
    let header = case_header("eddsa_valid");
    let token = header.trim_start_matches("authorization: Bearer ");
    let out = authgate(&["inspect", token]);
    assert_eq!(out.status.code(), Some(0));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["verified"], false);
    assert_eq!(json["header"]["alg"], "EdDSA");
    assert_eq!(json["claims"]["sub"], "user-1");
    assert!(String::from_utf8_lossy(&out.stderr).contains("NOT verified"));
    assert_eq!(authgate(&["inspect", "a.b"]).status.code(), Some(2));
}

#[test]
fn headers_come_from_a_file_or_stdin_like_curl() {
    let (dir, config, feed, now) = fixture("hfile");
    let header = case_header("eddsa_valid");
    let file = dir.join("headers.txt");
    std::fs::write(&file, format!("{header}\r\nx-trace: 1\n")).unwrap();
    let at_file = format!("@{}", file.display());
    let out = authgate(&["verify", "--config", &config, "--feed", &feed, "--now", &now, "--path", "/api/items", "-H", &at_file]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    // A 200 KB header: longer than the kernel lets an argument be, fine through stdin.
    let big = format!("authorization: Bearer {}", "a".repeat(200_000));
    let mut child = Command::new(env!("CARGO_BIN_EXE_authgate"))
        .args(["verify", "--config", &config, "--feed", &feed, "--now", &now, "--path", "/api/items", "-H", "@-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(big.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["code"], "token_too_large");
    let missing = authgate(&["verify", "--config", &config, "-H", "@/nonexistent/headers"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("-H @/nonexistent/headers"));
}

#[test]
fn config_check_refuses_what_the_gateways_refuse() {
    let dir = std::env::temp_dir().join(format!("authgate-cli-strict-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let doc = r#"{"providers": [{"issuer": "https://iss", "audiences": ["api"], "jwks_uri": "https://user@auth.example/jwks"}],
                  "routes": [{"prefix": "/", "require": "authenticated"}]}"#;
    let file = dir.join("userinfo.json");
    std::fs::write(&file, doc).unwrap();
    let out = authgate(&["config", "check", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("providers[0].jwks_uri: must not carry user info"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // --plugin: the plugin's own parser, `host` block included.
    let plugin_doc = r#"{"host": {"upstreams": {"https://auth.example": "issuer"}},
                         "providers": [{"issuer": "https://iss", "audiences": ["api"], "jwks_uri": "https://auth.example/jwks"}],
                         "routes": [{"prefix": "/", "require": "authenticated"}]}"#;
    let file = dir.join("plugin.json");
    std::fs::write(&file, plugin_doc).unwrap();
    let out = authgate(&["config", "check", "--plugin", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let out = authgate(&["config", "check", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "the host block is the plugin's, not the gateway document's");
    std::fs::write(&file, plugin_doc.replace("https://auth.example\": \"issuer", "https://other.example\": \"issuer")).unwrap();
    let out = authgate(&["config", "check", "--plugin", file.to_str().unwrap()]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("host.upstreams: no upstream for origin"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
