//! The user's own clients are built before any of streamgate's (its own
//! process: a test binary is one program).

use streamgate_dependent::*;

#[tokio::test]
async fn plain_clients_built_first_work_and_so_does_streamgate_after() {
    let server = mock().await;
    let plain = reqwest::Client::new();
    let (status, body) = plain_call(&plain, &server).await;
    assert_eq!(status, 200);
    assert!(body.contains("[DONE]"), "{body}");

    let ours = streamgate_client(&server);
    assert!(
        no_process_provider(),
        "streamgate installed a crypto provider"
    );
    assert!(!streamgate_call(ours).await.is_empty());
    assert_eq!(server.tokens_served(), 10);

    // Last: rustls's own default builder installs the provider it picks.
    let _config = default_rustls_config();
}
