//! A streamgate client is built before the user's own clients (its own
//! process: a test binary is one program).

use streamgate_dependent::*;

#[tokio::test]
async fn streamgate_client_built_first_leaves_plain_clients_working() {
    let server = mock().await;
    let ours = streamgate_client(&server);
    assert!(
        no_process_provider(),
        "streamgate installed a crypto provider"
    );
    assert!(!streamgate_call(ours).await.is_empty());

    let plain = reqwest::Client::new();
    let (status, body) = plain_call(&plain, &server).await;
    assert_eq!(status, 200);
    assert!(body.contains("[DONE]"), "{body}");
    assert_eq!(server.tokens_served(), 10);
    let _config = default_rustls_config();
}
