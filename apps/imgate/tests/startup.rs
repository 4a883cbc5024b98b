//! Start-up as an operator meets it: the real binary, real configuration files and variables.

use std::process::Command;

fn imgate(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let config_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../config");
    let mut command = Command::new(env!("CARGO_BIN_EXE_imgate"));
    command.args(["--config-dir", config_dir]).args(args);
    // The operator's own environment must not leak into these checks.
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("IMGATE")) {
        command.env_remove(key);
    }
    command.envs(env.iter().copied());
    command.output().expect("the imgate binary runs")
}

fn stderr_lines(output: &std::process::Output) -> Vec<String> {
    String::from_utf8_lossy(&output.stderr)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_bad_value_is_one_clear_line_naming_key_and_variable() {
    let output = imgate(
        &["check-config"],
        &[("IMGATE__SERVER__BIND", "not-an-address")],
    );
    assert_eq!(output.status.code(), Some(2));
    let lines = stderr_lines(&output);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("server.bind"), "{lines:?}");
    assert!(lines[0].contains("IMGATE__SERVER__BIND"), "{lines:?}");
}

#[test]
fn a_real_provider_without_a_jwt_key_does_not_start() {
    let output = imgate(
        &[],
        &[
            ("IMGATE__PROVIDER__URL", "https://chat.example.com"),
            ("IMGATE__PROVIDER__ADMIN_PASSWORD", "admin-password"),
            ("IMGATE__PROVIDER__DEFAULT_PASSWORD", "user-password"),
        ],
    );
    assert_eq!(output.status.code(), Some(2));
    let lines = stderr_lines(&output);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains("auth.jwt_secret") && lines[0].contains("IMGATE__AUTH__JWT_SECRET"),
        "{lines:?}"
    );
}

#[test]
fn unknown_keys_and_bad_types_are_named() {
    let output = imgate(
        &["check-config"],
        &[("IMGATE__SERVER__BIDN", "127.0.0.1:1")],
    );
    assert_eq!(output.status.code(), Some(2));
    let text = String::from_utf8_lossy(&output.stderr);
    assert!(text.contains("bidn"), "{text}");

    let output = imgate(
        &["check-config"],
        &[("IMGATE__PROVIDER__TOKEN_TTL_S", "soon")],
    );
    assert_eq!(output.status.code(), Some(2));
    let text = String::from_utf8_lossy(&output.stderr);
    assert!(text.contains("token_ttl_s"), "{text}");
}

#[test]
fn a_short_secret_and_a_missing_key_file_are_refused() {
    let output = imgate(&["check-config"], &[("IMGATE__AUTH__JWT_SECRET", "short")]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("at least 32 bytes"));
    let output = imgate(
        &["check-config"],
        &[("IMGATE__AUTH__JWT_PUBLIC_KEY_FILE", "/nonexistent.pem")],
    );
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("/nonexistent.pem"));
}

#[test]
fn the_defaults_are_valid_and_mint_demo_tokens() {
    let output = imgate(&["check-config"], &[]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let output = imgate(&["token", "--user", "bob"], &[]);
    assert!(output.status.success());
    let token = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    assert_eq!(token.split('.').count(), 3, "{token}");
    // With a real key configured, minting is refused.
    let output = imgate(
        &["token", "--user", "bob"],
        &[(
            "IMGATE__AUTH__JWT_SECRET",
            "0123456789abcdef0123456789abcdef",
        )],
    );
    assert_eq!(output.status.code(), Some(2));
}
