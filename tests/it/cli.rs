//! The binary's command-line surface: help, exit codes, one-line errors.

use std::io::Write;

use crate::support::hookline;

#[test]
fn help_lists_every_command_of_the_contract() {
    let output = hookline("127.0.0.1:1").arg("--help").output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for command in [
        "run",
        "setup-topics",
        "tenants",
        "keygen",
        "send",
        "receive",
        "demo",
        "api",
    ] {
        assert!(
            help.lines().any(|l| l.trim_start().starts_with(command)),
            "{command} missing from:\n{help}"
        );
    }
}

#[test]
fn bad_configuration_is_one_line_naming_file_and_key_with_exit_1() {
    let cases = [
        ("[delivery]\nretries = 3\n", "delivery.retries: unknown key"),
        ("[delivery]\ntimeout = \"soon\"\n", "delivery.timeout"),
        (
            "[delivery]\nmax_attempts = true\n",
            "delivery.max_attempts: cannot be parsed: invalid type",
        ),
    ];
    for (content, expected) in cases {
        let mut file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        file.write_all(content.as_bytes()).unwrap();
        let output = hookline("127.0.0.1:1")
            .arg("--config")
            .arg(file.path())
            .arg("run")
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(1), "{content}");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "one line expected: {stderr}");
        assert!(
            stderr.contains(&file.path().display().to_string()),
            "{stderr}"
        );
        assert!(stderr.contains(expected), "{stderr}");
    }
}

#[test]
fn unknown_flag_is_one_line_with_exit_1() {
    let output = hookline("127.0.0.1:1")
        .args(["run", "--frobnicate"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("--frobnicate"), "{stderr}");
}
