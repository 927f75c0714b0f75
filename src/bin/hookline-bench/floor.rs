//! The floor: what one delivery cannot avoid, measured on this machine in
//! the same run. The primitives are timed through aws-lc-rs directly (the
//! library's own types add the JWE framing, timed separately), each in a
//! loop long enough to drown the clock's resolution.

use std::time::{Duration, Instant};

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::rsa::{
    KeySize, OAEP_SHA256_MGF1SHA256, OaepPublicEncryptingKey, PrivateDecryptingKey,
};
use hookline::crypto::SigningSecret;
use hookline::crypto::jwe::Recipient;
use hookline::crypto::{PrivateKey, fill_random};
use hookline::tenants::TenantEntry;

/// Microseconds per operation of each floor item.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Floor {
    pub rsa_oaep_wrap_2048_us: f64,
    pub rsa_oaep_wrap_4096_us: f64,
    pub aes_256_gcm_1kib_us: f64,
    pub signature_us: f64,
    /// One keep-alive POST of a JWE-sized body to the local receiver, wall
    /// time (client and receiver together, on loopback). It moves with
    /// the machine's thread wake-up latency, one round trip at a time.
    pub keepalive_post_us: f64,
    /// The CPU time of the same POSTs (client and receiver together):
    /// what the machine spends, apart from waiting.
    pub keepalive_post_cpu_us: f64,
    /// The whole JWE of 1 KiB with the library (wrap + AES-GCM + framing).
    pub jwe_encrypt_1kib_us: f64,
    /// The same for a tenant not prepared yet: its aws-lc key built from
    /// its numbers, its `kid`, JWE header and URL (`Tenant::prepare`),
    /// then the JWE, whose wrap builds the key's Montgomery context first.
    pub jwe_encrypt_1kib_cold_us: f64,
}

impl Floor {
    /// One row per item, and the items in the JSON results.
    pub fn report(&self, report: &mut crate::Report) {
        let items = [
            (
                "RSA-OAEP-256 wrap, 2048 bits",
                self.rsa_oaep_wrap_2048_us,
                1,
            ),
            (
                "RSA-OAEP-256 wrap, 4096 bits",
                self.rsa_oaep_wrap_4096_us,
                1,
            ),
            ("AES-256-GCM, 1 KiB", self.aes_256_gcm_1kib_us, 2),
            ("signature (HMAC-SHA256)", self.signature_us, 2),
            ("keep-alive POST, loopback", self.keepalive_post_us, 1),
            (
                "keep-alive POST, CPU (client + receiver)",
                self.keepalive_post_cpu_us,
                1,
            ),
            ("JWE of 1 KiB (library)", self.jwe_encrypt_1kib_us, 1),
            (
                "JWE of 1 KiB, tenant prepared first (a cold tenant)",
                self.jwe_encrypt_1kib_cold_us,
                1,
            ),
            ("floor per delivery", self.per_delivery_us(), 1),
        ];
        for (measure, us, decimals) in items {
            report.row(measure, format!("{us:.decimals$} µs"));
        }
        report.insert(
            "floor",
            serde_json::json!({"items": self, "per_delivery_us": self.per_delivery_us()}),
        );
    }

    /// wrap (2048) + AES-GCM + signature + POST: the per-delivery minimum.
    pub fn per_delivery_us(&self) -> f64 {
        self.rsa_oaep_wrap_2048_us
            + self.aes_256_gcm_1kib_us
            + self.signature_us
            + self.keepalive_post_us
    }
}

/// Times `op` for about `budget`, returning microseconds per call.
fn time_per_op(budget: Duration, mut op: impl FnMut()) -> f64 {
    // Warm caches and lazily built tables first.
    for _ in 0..10 {
        op();
    }
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed() < budget {
        for _ in 0..10 {
            op();
        }
        n += 10;
    }
    started.elapsed().as_secs_f64() * 1e6 / n as f64
}

fn wrap_us(size: KeySize, budget: Duration) -> Result<f64, String> {
    let private = PrivateDecryptingKey::generate(size).map_err(|e| e.to_string())?;
    let public = OaepPublicEncryptingKey::new(private.public_key()).map_err(|e| e.to_string())?;
    let cek = [7u8; 32];
    let mut out = vec![0u8; public.ciphertext_size()];
    Ok(time_per_op(budget, || {
        // The result is used so that the call cannot be optimised away.
        let wrapped = public
            .encrypt(&OAEP_SHA256_MGF1SHA256, &cek, &mut out, None)
            .map(|w| w.len());
        std::hint::black_box(wrapped.ok());
    }))
}

pub async fn measure(post_url: &str, budget: Duration) -> Result<Floor, String> {
    let rsa_oaep_wrap_2048_us = wrap_us(KeySize::Rsa2048, budget)?;
    let rsa_oaep_wrap_4096_us = wrap_us(KeySize::Rsa4096, budget)?;

    let mut cek = [0u8; 32];
    fill_random(&mut cek);
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &cek).map_err(|e| e.to_string())?);
    let plaintext = vec![b'x'; 1024];
    let aes_256_gcm_1kib_us = time_per_op(budget, || {
        let mut buffer = plaintext.clone();
        let tag = key.seal_in_place_separate_tag(
            Nonce::assume_unique_for_key([1u8; 12]),
            Aad::from(b"header"),
            &mut buffer,
        );
        std::hint::black_box((tag.is_ok(), buffer));
    });

    let private = PrivateKey::generate(2048).map_err(|e| e.to_string())?;
    let recipient = Recipient::new(private.public_key(), "bench");
    let jwe_encrypt_1kib_us = time_per_op(budget, || {
        std::hint::black_box(recipient.encrypt(&plaintext).ok());
    });
    let body = recipient.encrypt(&plaintext).map_err(|e| e.to_string())?;
    let record = serde_json::json!({
        "url": "https://hooks.example.com/webhooks/acme",
        "public_key": private.public_key().to_spki_pem(),
    });
    let tenant = match TenantEntry::from_value("acme", record.to_string().as_bytes()) {
        TenantEntry::Valid(tenant) => tenant,
        TenantEntry::Invalid { error, .. } => return Err(error),
    };
    let jwe_encrypt_1kib_cold_us = time_per_op(budget, || {
        let prepared = tenant.prepare().ok();
        std::hint::black_box(prepared.map(|p| p.recipient.encrypt(&plaintext).ok()));
    });

    let secret = SigningSecret::generate();
    let signature_us = time_per_op(budget, || {
        std::hint::black_box(secret.sign("b1700000000000000000-1", 1_700_000_000, &body));
    });

    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .map_err(|e| e.to_string())?;
    let post = || async {
        client
            .post(post_url)
            .header("content-type", "application/jose+json")
            .body(body.clone())
            .send()
            .await
            .map(|r| r.status())
    };
    for _ in 0..100 {
        post().await.map_err(|e| e.to_string())?;
    }
    let cpu_before = process_cpu_seconds();
    let started = Instant::now();
    let mut n = 0u32;
    while started.elapsed() < budget {
        post().await.map_err(|e| e.to_string())?;
        n += 1;
    }
    let keepalive_post_us = started.elapsed().as_secs_f64() * 1e6 / f64::from(n.max(1));
    let keepalive_post_cpu_us = (process_cpu_seconds() - cpu_before) * 1e6 / f64::from(n.max(1));

    Ok(Floor {
        rsa_oaep_wrap_2048_us,
        rsa_oaep_wrap_4096_us,
        aes_256_gcm_1kib_us,
        signature_us,
        keepalive_post_us,
        keepalive_post_cpu_us,
        jwe_encrypt_1kib_us,
        jwe_encrypt_1kib_cold_us,
    })
}

/// This process's CPU time (user + system) so far, in clock ticks'
/// resolution.
fn process_cpu_seconds() -> f64 {
    let ticks = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| crate::stats::cpu_ticks(&s))
        .unwrap_or(0);
    ticks as f64 / crate::replica::clock_ticks() as f64
}
