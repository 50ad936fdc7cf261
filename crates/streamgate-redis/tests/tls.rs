//! `rediss://` URLs, with and without the `tls` feature. With it, against a
//! real `redis-server` speaking TLS only on a loopback port, with a
//! certificate authority made for the test. One test per feature setting:
//! the crypto provider is process-wide, and the test decides when it is
//! installed. `cargo xtask ci` runs this file both ways.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use streamgate_redis::Fleet;

const SECRET: &str = "hunter2-tls";

#[cfg(not(feature = "tls"))]
#[test]
fn a_rediss_url_without_the_tls_feature_is_refused_with_the_feature_to_enable() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let _entered = runtime.enter();
    for url in [
        format!("rediss://:{SECRET}@127.0.0.1:6380/"),
        format!("valkeys://user:{SECRET}@127.0.0.1:6380/"),
    ] {
        let error = Fleet::builder(url.clone()).build().unwrap_err();
        let text = format!("{error} {error:?}");
        assert!(text.contains("`tls` feature"), "{text}");
        assert!(text.contains("`redis-tls`"), "{text}");
        assert!(!text.contains(SECRET), "{text}");
        assert!(!format!("{:?}", Fleet::builder(url)).contains(SECRET));
    }
    // Plain URLs are unaffected.
    assert!(Fleet::builder("redis://127.0.0.1:6380/").build().is_ok());
}

#[cfg(feature = "tls")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rediss_url_needs_a_crypto_provider_then_shares_state_over_tls() {
    use std::time::Duration;

    use common::{certificates, RedisServer};
    use streamgate_core::{
        state::{Reserve, StateKey},
        BackendId,
    };

    let url = format!("rediss://:{SECRET}@127.0.0.1:6380/");
    // No process-wide provider yet: a clear error, not a panic later.
    let error = Fleet::builder(url.clone()).build().unwrap_err();
    let text = format!("{error} {error:?}");
    assert!(text.contains("crypto provider"), "{text}");
    assert!(text.contains("install_default"), "{text}");
    assert!(!text.contains(SECRET), "{text}");

    // The program installs one (streamgate never does).
    rustls::crypto::aws_lc_rs::default_provider()
        .install_default()
        .unwrap();
    let fleet = Fleet::builder(url.clone()).build().unwrap();
    assert!(fleet.url().starts_with("rediss://"));
    for text in [
        fleet.url().to_owned(),
        format!("{fleet:?}"),
        format!("{:?}", Fleet::builder(url.clone())),
        format!("{:?}", fleet.state()),
    ] {
        assert!(!text.contains(SECRET), "{text}");
    }
    drop(fleet);
    let error = Fleet::builder(format!("{url}#insecure"))
        .build()
        .unwrap_err();
    assert!(error.to_string().contains("#insecure"), "{error}");
    assert!(!format!("{error} {error:?}").contains(SECRET));

    // A real server over TLS, trusted through SSL_CERT_FILE.
    let dir = std::env::temp_dir().join(format!("streamgate-redis-tls-{}", std::process::id()));
    if !certificates(&dir) {
        return;
    }
    let Some(redis) = RedisServer::start_tls(Some(SECRET), &dir).await else {
        return;
    };
    // Read when the client connects; this test is its binary's only one.
    std::env::set_var("SSL_CERT_FILE", dir.join("ca.crt"));
    let timeout = Duration::from_secs(2);
    let mut fleets = Vec::new();
    for _ in 0..2 {
        let fleet = Fleet::builder(redis.url())
            .prefix("tls")
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .unwrap();
        tokio::time::timeout(timeout * 5, fleet.connected())
            .await
            .expect("the fleet connects over tls");
        fleets.push(fleet);
    }
    let backend = BackendId::new("openai");
    let key = StateKey::new(&backend, "m");
    let Reserve::Confirm(_, answer) = fleets[0].tpm().reserve(key, 700, 1_000) else {
        panic!("a connected fleet asks redis");
    };
    answer.await.unwrap();
    let Reserve::Confirm(_, answer) = fleets[1].tpm().reserve(key, 700, 1_000) else {
        panic!("a connected fleet asks redis");
    };
    assert!(answer.await.is_err(), "the second replica sees the first's");
    assert_eq!(fleets[1].tpm_use(&backend, "m").await, Some(700));
    drop(redis);
    let _ = std::fs::remove_dir_all(&dir);
}
