//! `hookline keygen`: the customer's RSA key pair. The private key never
//! leaves the customer; the public key goes into the tenant record.

use std::fs::OpenOptions;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use secrecy::ExposeSecret as _;

use crate::cli::KeygenArgs;
use crate::crypto::PrivateKey;

/// The private key's file name inside `--out`.
pub const PRIVATE_FILE: &str = "private.pem";
/// The public key's file name inside `--out`.
pub const PUBLIC_FILE: &str = "public.pem";

/// What `keygen` wrote.
#[derive(Debug)]
pub struct KeyPairFiles {
    /// `DIR/private.pem`: PKCS#8, mode 0600.
    pub private: PathBuf,
    /// `DIR/public.pem`: SPKI.
    pub public: PathBuf,
    /// The RFC 7638 thumbprint of the key: the default `kid`.
    pub thumbprint: String,
}

/// Runs `hookline keygen`.
pub fn run(args: &KeygenArgs) -> Result<ExitCode> {
    let files = write_key_pair(&args.out, args.bits, args.force)?;
    println!("private key: {}", files.private.display());
    println!("public key:  {}", files.public.display());
    println!("kid:         {}", files.thumbprint);
    Ok(ExitCode::SUCCESS)
}

/// Generates a key pair of `bits` and writes `private.pem` (PKCS#8, created
/// with mode 0600) and `public.pem` (SPKI) into `dir`, creating `dir` when
/// missing. Existing files are refused unless `force` is set.
pub fn write_key_pair(dir: &Path, bits: u32, force: bool) -> Result<KeyPairFiles> {
    let private = dir.join(PRIVATE_FILE);
    let public = dir.join(PUBLIC_FILE);
    // Both files are checked before the (slow) generation so that a refusal
    // is immediate and nothing is half-written.
    if !force {
        for path in [&private, &public] {
            if path.symlink_metadata().is_ok() {
                bail!(
                    "{} already exists (use --force to overwrite)",
                    path.display()
                );
            }
        }
    }
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create directory {}", dir.display()))?;

    let key = PrivateKey::generate(bits).context("cannot generate the key pair")?;
    let private_pem = key
        .to_pkcs8_pem()
        .context("cannot encode the private key")?;
    write_new_file(
        &private,
        private_pem.expose_secret().as_bytes(),
        0o600,
        force,
    )?;
    let public_key = key.public_key();
    write_new_file(&public, public_key.to_spki_pem().as_bytes(), 0o644, force)?;
    Ok(KeyPairFiles {
        private,
        public,
        thumbprint: public_key.thumbprint(),
    })
}

/// Creates `path` with `mode` from the start, so that the private key is
/// never readable by others, not even between a create and a chmod. With
/// `replace`, an existing file is removed first: opening it for writing
/// would keep its old, possibly wider, permissions.
fn write_new_file(path: &Path, contents: &[u8], mode: u32, replace: bool) -> Result<()> {
    if replace {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(e).with_context(|| format!("cannot replace {}", path.display()));
            }
        }
    }
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = match options.open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            bail!(
                "{} already exists (use --force to overwrite)",
                path.display()
            )
        }
        Err(e) => return Err(e).with_context(|| format!("cannot create {}", path.display())),
    };
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;
    use crate::crypto::PublicKey;
    use crate::crypto::SigningSecret;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn writes_a_loadable_pair_with_a_private_file_of_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("nested/keys");
        let files = write_key_pair(&out, 2048, false).unwrap();
        assert_eq!(files.private, out.join("private.pem"));
        assert_eq!(mode(&files.private), 0o600);

        let private = std::fs::read_to_string(&files.private).unwrap();
        let public = std::fs::read_to_string(&files.public).unwrap();
        assert!(private.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        assert!(public.starts_with("-----BEGIN PUBLIC KEY-----\n"));
        let private = PrivateKey::parse(&private).unwrap();
        let public = PublicKey::parse(&public).unwrap();
        assert_eq!(private.public_key(), public);
        assert_eq!(private.bits(), 2048);
        assert_eq!(files.thumbprint, public.thumbprint());
    }

    #[test]
    fn refuses_to_overwrite_without_force_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(PUBLIC_FILE), "keep me").unwrap();
        let err = write_key_pair(dir.path(), 2048, false).unwrap_err();
        let message = format!("{err:#}");
        assert!(message.contains("public.pem already exists"), "{message}");
        assert!(!message.contains('\n'), "{message}");
        // Nothing was written, not even the private key.
        assert!(!dir.path().join(PRIVATE_FILE).exists());
        assert_eq!(
            std::fs::read_to_string(dir.path().join(PUBLIC_FILE)).unwrap(),
            "keep me"
        );
    }

    #[test]
    fn force_replaces_both_files_and_tightens_a_loose_private_file() {
        let dir = tempfile::tempdir().unwrap();
        let first = write_key_pair(dir.path(), 2048, false).unwrap();
        std::fs::set_permissions(&first.private, std::fs::Permissions::from_mode(0o644)).unwrap();
        let second = write_key_pair(dir.path(), 2048, true).unwrap();
        assert_ne!(first.thumbprint, second.thumbprint);
        assert_eq!(mode(&second.private), 0o600);
        let public = PublicKey::parse(&std::fs::read_to_string(&second.public).unwrap()).unwrap();
        assert_eq!(public.thumbprint(), second.thumbprint);
    }

    #[test]
    fn honours_the_requested_size() {
        let dir = tempfile::tempdir().unwrap();
        let files = write_key_pair(dir.path(), 3072, false).unwrap();
        let key = PrivateKey::parse(&std::fs::read_to_string(&files.private).unwrap()).unwrap();
        assert_eq!(key.bits(), 3072);
    }

    /// Emits what `tests/interop/run.sh` feeds to third-party libraries: a
    /// key pair written by keygen, and a request as hookline sends it. The
    /// files go to `$HOOKLINE_INTEROP_DIR` when set, to a temporary directory
    /// otherwise; either way the request is checked to open here first.
    #[test]
    fn emits_interop_fixtures() {
        write_interop_fixture("HOOKLINE_INTEROP_DIR", &[SigningSecret::generate()]);
    }

    /// The same during a signing-secret rotation: the request carries two
    /// `v1` signatures, the new secret's and the old one's, and the fixture
    /// lists both secrets (`secrets`, new first); each must verify it alone.
    /// Into `$HOOKLINE_INTEROP_ROTATION_DIR` when set.
    #[test]
    fn emits_rotation_interop_fixtures() {
        let secrets = [SigningSecret::generate(), SigningSecret::generate()];
        write_interop_fixture("HOOKLINE_INTEROP_ROTATION_DIR", &secrets);
    }

    /// Writes a key pair and a request signed with every one of `secrets`
    /// into the directory named by the environment variable `variable`, and
    /// checks that a receiver knowing any single one of them opens it.
    fn write_interop_fixture(variable: &str, secrets: &[SigningSecret]) {
        use std::time::SystemTime;

        use crate::crypto::jwe;
        use crate::crypto::signature::{sign_all, unix_seconds};
        use crate::receiver::{Receiver, WebhookHeaders};

        let temp = tempfile::tempdir().unwrap();
        let dir = std::env::var_os(variable)
            .map(PathBuf::from)
            .unwrap_or_else(|| temp.path().to_owned());
        let files = write_key_pair(&dir.join("keys"), 2048, true).unwrap();
        let public = PublicKey::parse(&std::fs::read_to_string(&files.public).unwrap()).unwrap();
        let private = PrivateKey::parse(&std::fs::read_to_string(&files.private).unwrap()).unwrap();

        let id = "evt_interop_1";
        let plaintext = serde_json::json!({
            "id": id,
            "type": "order.created",
            "timestamp": "2026-11-28T10:00:00Z",
            "tenant": "acme",
            "data": {"order": 42, "note": "caf\u{e9} \u{2713}"},
        });
        let body = jwe::encrypt(
            &public,
            &files.thumbprint,
            &serde_json::to_vec(&plaintext).unwrap(),
        )
        .unwrap();
        let now = SystemTime::now();
        let timestamp = unix_seconds(now);
        let signature = sign_all(secrets, id, timestamp, &body).unwrap();
        assert_eq!(signature.split(' ').count(), secrets.len());
        let whsecs: Vec<String> = secrets
            .iter()
            .map(|s| s.to_whsec().expose_secret().to_string())
            .collect();
        let request = serde_json::json!({
            "webhook-id": id,
            "webhook-timestamp": timestamp.to_string(),
            "webhook-signature": signature,
            "content-type": jwe::CONTENT_TYPE,
            "secret": whsecs[0],
            "secrets": whsecs,
            "kid": files.thumbprint,
            "plaintext": plaintext,
        });
        std::fs::write(dir.join("body.json"), &body).unwrap();
        std::fs::write(
            dir.join("request.json"),
            serde_json::to_vec_pretty(&request).unwrap(),
        )
        .unwrap();

        let timestamp = timestamp.to_string();
        let headers = WebhookHeaders {
            id: Some(id),
            timestamp: Some(&timestamp),
            signature: Some(&signature),
            content_type: Some(jwe::CONTENT_TYPE),
        };
        for secret in secrets {
            let receiver = Receiver::new(
                [private.clone()].into_iter().collect(),
                Some(secret.clone()),
            );
            let delivery = receiver.receive(&headers, &body, now).unwrap();
            assert_eq!(delivery.data, plaintext["data"]);
        }
    }
}
