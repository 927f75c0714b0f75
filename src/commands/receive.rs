//! `hookline receive`: a reference customer endpoint. It answers POST on any
//! path, verifies and decrypts each delivery, and prints one JSON line per
//! accepted delivery on stdout; logs go to stderr.
//!
//! The endpoint is [`crate::receiver::server`]; this command turns the flags
//! into its receiver (key files and signing secret), binds the address and
//! serves until SIGINT or SIGTERM, then lets the requests in flight finish;
//! a second signal exits at once.

use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::{Context as _, Result};
use secrecy::ExposeSecret as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::cli::{PrivateKeyArg, ReceiveArgs};
use crate::config::LogFormat;
use crate::crypto::{KeyRing, PrivateKey, SigningSecret};
use crate::receiver::Receiver;
use crate::receiver::server::{self, Output};
use crate::telemetry;

/// Runs `hookline receive` until SIGINT or SIGTERM.
pub async fn run(args: ReceiveArgs) -> Result<ExitCode> {
    telemetry::init_logging(LogFormat::Text);
    let secrets: Vec<&str> = args
        .signing_secrets
        .iter()
        .map(|s| s.expose_secret())
        .collect();
    let receiver = load_receiver(&args.private_keys, &secrets)?;
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let address = listener
        .local_addr()
        .context("cannot read the bound address")?;
    // With port 0 the real port is only known now; scripts and tests read it
    // from this line.
    eprintln!("listening on {address}");
    let output: Output = Arc::new(Mutex::new(std::io::stdout()));
    let shutdown = CancellationToken::new();
    super::signals::cancel_on_signal(
        shutdown.clone(),
        "the receiver",
        "stopping (signal again to exit at once)",
    );
    server::serve(listener, receiver, output, shutdown.cancelled_owned())
        .await
        .context("the HTTP server failed")?;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// Builds the receiver from private key files, each under the `kid` given
/// with it (a tenant's custom `key_id`) or else under its thumbprint, and
/// the `whsec_…` secrets (several during a rotation; none for testing).
fn load_receiver(private_keys: &[PrivateKeyArg], secrets: &[&str]) -> Result<Receiver> {
    let mut keys = KeyRing::new();
    for PrivateKeyArg { kid, path } in private_keys {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read private key {}", path.display()))?;
        let key = PrivateKey::parse(&text)
            .with_context(|| format!("invalid private key {}", path.display()))?;
        let kid = match kid {
            Some(kid) => {
                keys.insert(kid.clone(), key);
                kid.clone()
            }
            None => keys.insert_with_thumbprint(key),
        };
        tracing::info!(kid, path = %path.display(), "loaded private key");
    }
    let secrets = secrets
        .iter()
        .enumerate()
        .map(|(index, text)| {
            // The position names the bad one without showing any secret.
            SigningSecret::parse(text)
                .with_context(|| format!("invalid --signing-secret (number {})", index + 1))
        })
        .collect::<Result<Vec<_>>>()?;
    if secrets.is_empty() {
        tracing::warn!(
            "no --signing-secret (or HOOKLINE_SIGNING_SECRET): signatures are NOT verified and anyone can forge \
             deliveries; use this for testing only"
        );
    }
    Ok(Receiver::with_secrets(keys, secrets))
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::SystemTime;

    use super::*;
    use crate::crypto::jwe;
    use crate::crypto::signature::unix_seconds;
    use crate::receiver::WebhookHeaders;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    /// The receiver for key files given as plain paths, as `--private-key
    /// FILE` gives them.
    fn load_paths(paths: &[&Path], secrets: &[&str]) -> Result<Receiver> {
        let keys: Vec<PrivateKeyArg> = paths
            .iter()
            .map(|path| PrivateKeyArg {
                kid: None,
                path: path.to_path_buf(),
            })
            .collect();
        load_receiver(&keys, secrets)
    }

    #[tokio::test]
    async fn a_key_given_as_kid_equals_file_opens_deliveries_with_that_kid() {
        let dir = tempfile::tempdir().unwrap();
        let files = super::super::keygen::write_key_pair(dir.path(), 2048, false).unwrap();
        let key = PrivateKey::parse(&std::fs::read_to_string(&files.private).unwrap()).unwrap();
        let arg: PrivateKeyArg = format!("2026-11={}", files.private.display())
            .parse()
            .unwrap();
        let receiver = load_receiver(&[arg], &[SECRET]).unwrap();
        assert_eq!(receiver.keys.kids().collect::<Vec<_>>(), ["2026-11"]);

        let plaintext = serde_json::json!({
            "id": "evt_kid", "type": "t", "timestamp": "2026-11-28T10:00:00Z",
            "tenant": "acme", "data": null,
        });
        let body = jwe::encrypt(
            &key.public_key(),
            "2026-11",
            &serde_json::to_vec(&plaintext).unwrap(),
        )
        .unwrap();
        let now = SystemTime::now();
        let timestamp = unix_seconds(now).to_string();
        let signature =
            SigningSecret::parse(SECRET)
                .unwrap()
                .sign("evt_kid", unix_seconds(now), &body);
        let headers = WebhookHeaders {
            id: Some("evt_kid"),
            timestamp: Some(&timestamp),
            signature: Some(&signature),
            content_type: Some(jwe::CONTENT_TYPE),
        };
        let delivery = receiver.receive(&headers, &body, now).unwrap();
        assert_eq!(delivery.kid, "2026-11");
    }

    #[test]
    fn refuses_unreadable_or_invalid_keys_and_secrets_naming_them() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let err = load_paths(&[&missing], &[]).unwrap_err();
        assert!(format!("{err:#}").contains("missing.pem"), "{err:#}");

        let public = dir.path().join("public.pem");
        std::fs::write(
            &public,
            crate::crypto::PrivateKey::generate(2048)
                .unwrap()
                .public_key()
                .to_spki_pem(),
        )
        .unwrap();
        let err = load_paths(&[&public], &[]).unwrap_err();
        let message = format!("{err:#}");
        assert!(
            message.contains("public.pem") && message.contains("PRIVATE KEY"),
            "{message}"
        );

        let files =
            super::super::keygen::write_key_pair(&dir.path().join("k"), 2048, false).unwrap();
        let err = load_paths(&[&files.private], &["secret"]).unwrap_err();
        assert!(format!("{err:#}").contains("--signing-secret"), "{err:#}");
        let err =
            load_paths(&[&files.private], &[SECRET, "whsec_MfKQ9r8GKYqrTwjUPD8"]).unwrap_err();
        let message = format!("{err:#}");
        assert!(message.contains("--signing-secret (number 2)"), "{message}");
        assert!(!message.contains("MfKQ9r8G"), "{message}");
        let both = load_paths(&[&files.private], &[SECRET, SECRET]).unwrap();
        assert_eq!(both.secrets.len(), 2);
    }
}
