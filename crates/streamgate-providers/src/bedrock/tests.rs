#![allow(clippy::unwrap_used, clippy::expect_used)]

use aws_smithy_eventstream::frame::write_message_to;
use aws_smithy_types::event_stream::{Header, HeaderValue as FrameValue};

use super::*;
use crate::client::encode_segment;
use crate::stream::test_support::{run_with, split_with};

fn frame(headers: &[(&str, &str)], payload: &str) -> Vec<u8> {
    let mut message = Message::new(payload.as_bytes().to_vec());
    for (name, value) in headers {
        message = message.add_header(Header::new(
            (*name).to_owned(),
            FrameValue::String((*value).to_owned().into()),
        ));
    }
    let mut out = Vec::new();
    write_message_to(&message, &mut out).unwrap();
    out
}

fn event(kind: &str, payload: &str) -> Vec<u8> {
    frame(
        &[
            (":message-type", "event"),
            (":event-type", kind),
            (":content-type", "application/json"),
        ],
        payload,
    )
}

fn exception(kind: &str, message: &str) -> Vec<u8> {
    frame(
        &[
            (":message-type", "exception"),
            (":exception-type", kind),
            (":content-type", "application/json"),
        ],
        &json!({ "message": message }).to_string(),
    )
}

fn answer() -> Vec<Vec<u8>> {
    vec![
        event("messageStart", r#"{"role":"assistant"}"#),
        event(
            "contentBlockDelta",
            r#"{"contentBlockIndex":0,"delta":{"reasoningContent":{"text":"hmm"}}}"#,
        ),
        event(
            "contentBlockDelta",
            r#"{"contentBlockIndex":0,"delta":{"reasoningContent":{"signature":"c2ln"}}}"#,
        ),
        event("contentBlockStop", r#"{"contentBlockIndex":0}"#),
        event(
            "contentBlockDelta",
            r#"{"contentBlockIndex":1,"delta":{"text":"Hi"}}"#,
        ),
        event(
            "contentBlockStart",
            r#"{"contentBlockIndex":2,"start":{"toolUse":{"toolUseId":"t1","name":"get_weather"}}}"#,
        ),
        event(
            "contentBlockDelta",
            r#"{"contentBlockIndex":2,"delta":{"toolUse":{"input":"{\"city\""}}}"#,
        ),
        event("messageStop", r#"{"stopReason":"tool_use"}"#),
        event(
            "metadata",
            r#"{"usage":{"inputTokens":10,"outputTokens":7,"totalTokens":17,"cacheReadInputTokens":100,"cacheWriteInputTokens":5},"metrics":{"latencyMs":812}}"#,
        ),
    ]
}

fn run_frames(frames: &[Vec<u8>]) -> Vec<Result<ChatChunk, ProviderError>> {
    let pieces: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
    run_with(
        ConverseParser::default(),
        EventStreamDecoder::default(),
        &pieces,
    )
}

#[test]
fn stream_split_at_every_byte_agrees_and_maps_every_event() {
    let input = answer().concat();
    let items: Vec<ChatChunk> = split_with(
        || (ConverseParser::default(), EventStreamDecoder::default()),
        &input,
    )
    .into_iter()
    .map(Result::unwrap)
    .collect();
    let kinds: Vec<ChunkKind> = items.iter().map(|c| c.kind).collect();
    assert_eq!(
        kinds,
        [
            ChunkKind::Start,
            ChunkKind::Delta,
            ChunkKind::Other,
            ChunkKind::Other,
            ChunkKind::Delta,
            ChunkKind::Delta,
            ChunkKind::Delta,
            ChunkKind::Stop,
            ChunkKind::Usage
        ]
    );
    assert_eq!(items.iter().position(|c| c.is_content()), Some(1));
    assert_eq!(items[1].reasoning, "hmm");
    assert!(
        !items[2].is_content(),
        "a signature-only delta is not content"
    );
    assert_eq!(items[4].text, "Hi");
    assert_eq!(items[5].tool_calls[0].id.as_deref(), Some("t1"));
    assert_eq!(items[5].tool_calls[0].name.as_deref(), Some("get_weather"));
    assert_eq!(items[6].tool_calls[0].arguments, "{\"city\"");
    assert_eq!(items[6].tool_calls[0].index, 2);
    assert_eq!(items[7].finish_reason.as_deref(), Some("tool_use"));
    assert_eq!(
        items[8].usage,
        Some(Usage {
            input_tokens: 115,
            output_tokens: 7,
            cached_input_tokens: 100,
            reasoning_tokens: 0
        })
    );
    assert_eq!(items[8].provider_latency, Some(Duration::from_millis(812)));
}

#[test]
fn every_frame_boundary_split_into_three_reads_agrees_with_the_whole() {
    let frames = answer();
    let input = frames.concat();
    let whole = run_frames(&frames);
    let mut boundaries = vec![0];
    for frame in &frames {
        boundaries.push(boundaries.last().unwrap() + frame.len());
    }
    // Cuts around every frame boundary (just before, at, just after), each
    // followed by a second cut anywhere in the next frame.
    for &boundary in &boundaries[1..boundaries.len() - 1] {
        for first in [boundary - 1, boundary, boundary + 1] {
            for second in first + 1..input.len().min(first + 40) {
                let pieces = [&input[..first], &input[first..second], &input[second..]];
                let items = run_with(
                    ConverseParser::default(),
                    EventStreamDecoder::default(),
                    &pieces,
                );
                assert_eq!(items.len(), whole.len(), "cuts at {first}, {second}");
                for (a, b) in items.iter().zip(&whole) {
                    assert_eq!(a.as_ref().unwrap(), b.as_ref().unwrap());
                }
            }
        }
    }
}

#[test]
fn every_stream_exception_gets_its_class_before_and_after_content() {
    let cases = [
        ("throttlingException", ErrorClass::RateLimited),
        ("modelStreamErrorException", ErrorClass::Server),
        ("serviceUnavailableException", ErrorClass::Overloaded),
        ("validationException", ErrorClass::Client),
        ("internalServerException", ErrorClass::Server),
        ("modelTimeoutException", ErrorClass::Timeout),
        ("somethingNewException", ErrorClass::Server),
    ];
    for (name, class) in cases {
        let items = run_frames(&[
            event("messageStart", r#"{"role":"assistant"}"#),
            exception(name, "it went wrong"),
        ]);
        assert_eq!(items.len(), 2, "{name}");
        let err = items[1].as_ref().unwrap_err();
        assert_eq!(err.class(), class, "{name}");
        assert_eq!(err.code(), Some(name));
        assert_eq!(err.message(), "it went wrong");
        assert!(err.is_in_band());
        assert_eq!(err.retry_after(), None, "{name}: no reset is known");

        let mut frames = answer();
        frames.truncate(5);
        frames.push(exception(name, "later"));
        let items = run_frames(&frames);
        assert_eq!(items.len(), 6, "{name}");
        assert!(items[4].as_ref().unwrap().is_content());
        assert_eq!(items[5].as_ref().unwrap_err().class(), class, "{name}");
    }
    let too_long = run_frames(&[exception(
        "validationException",
        "Input is too long for requested model.",
    )]);
    assert_eq!(
        too_long[0].as_ref().unwrap_err().class(),
        ErrorClass::ContextLength
    );
}

#[test]
fn input_cut_anywhere_before_message_stop_is_truncated() {
    let input = answer().concat();
    let stop_at = input.len() - answer().last().unwrap().len() - answer()[7].len();
    for cut in 0..stop_at {
        let items = run_with(
            ConverseParser::default(),
            EventStreamDecoder::default(),
            &[&input[..cut]],
        );
        let last = items.last().unwrap().as_ref().unwrap_err();
        assert_eq!(last.class(), ErrorClass::Truncated, "cut at {cut}");
        assert!(items[..items.len() - 1].iter().all(Result::is_ok));
    }
}

#[test]
fn end_of_input_after_message_stop_is_clean_even_without_metadata() {
    let mut frames = answer();
    frames.pop();
    let items = run_frames(&frames);
    assert_eq!(items.len(), 8);
    assert!(items.iter().all(Result::is_ok));
    assert_eq!(items[7].as_ref().unwrap().kind, ChunkKind::Stop);
}

#[test]
fn filtered_stop_reasons_are_content_filter_errors() {
    for reason in ["content_filtered", "guardrail_intervened"] {
        let payload = json!({ "stopReason": reason }).to_string();
        let items = run_frames(&[event("messageStop", &payload)]);
        let err = items[0].as_ref().unwrap_err();
        assert_eq!(err.class(), ErrorClass::ContentFilter, "{reason}");
        assert_eq!(err.code(), Some(reason));
    }
}

fn frame_error_of(item: &Result<ChatChunk, ProviderError>) -> &EventStreamError {
    let err = item.as_ref().unwrap_err();
    assert_eq!(err.class(), ErrorClass::Server);
    std::error::Error::source(err)
        .and_then(|s| s.downcast_ref::<EventStreamError>())
        .unwrap()
}

#[test]
fn a_bad_crc_anywhere_in_a_frame_is_a_typed_error_not_a_panic() {
    let good = event("contentBlockDelta", r#"{"delta":{"text":"x"}}"#);
    for at in 0..good.len() {
        let mut bad = good.clone();
        bad[at] ^= 0x20;
        let items = run_frames(&[bad]);
        assert_eq!(items.len(), 1, "byte {at}");
        if items[0].as_ref().unwrap_err().class() == ErrorClass::Truncated {
            // A larger length in the prelude waits for bytes that never come.
            assert!(at < 4, "byte {at}");
            continue;
        }
        // A flipped length byte may also announce an impossible length.
        assert!(
            matches!(
                frame_error_of(&items[0]),
                EventStreamError::Frame(_)
                    | EventStreamError::TooLarge { .. }
                    | EventStreamError::TooShort(_)
            ),
            "byte {at}"
        );
    }
    let mut bad_payload = good.clone();
    let payload_byte = good.len() - 6;
    bad_payload[payload_byte] ^= 1;
    let items = run_frames(&[bad_payload]);
    let EventStreamError::Frame(source) = frame_error_of(&items[0]) else {
        panic!("expected a codec error");
    };
    assert!(source.to_string().contains("checksum"), "{source}");
}

#[test]
fn a_frame_larger_than_the_bound_is_refused_before_it_is_buffered() {
    let mut huge = vec![0xff, 0xff, 0xff, 0xf0];
    huge.extend_from_slice(&[0; 8]);
    let items = run_frames(&[huge]);
    assert!(matches!(
        frame_error_of(&items[0]),
        EventStreamError::TooLarge { max, .. } if *max == DEFAULT_MAX_SIZE
    ));
    let items = run_with(
        ConverseParser::default(),
        EventStreamDecoder::with_limit(64),
        &[&event(
            "contentBlockDelta",
            &format!(r#"{{"delta":{{"text":"{}"}}}}"#, "x".repeat(64)),
        )],
    );
    assert!(matches!(
        frame_error_of(&items[0]),
        EventStreamError::TooLarge { max: 64, .. }
    ));
}

#[test]
fn a_message_without_its_type_headers_or_with_bad_json_is_a_typed_error() {
    let items = run_frames(&[frame(&[(":event-type", "messageStart")], "{}")]);
    assert!(matches!(
        frame_error_of(&items[0]),
        EventStreamError::MissingHeader(":message-type")
    ));
    let items = run_frames(&[event("contentBlockDelta", r#"{"delta":{"text":7}}"#)]);
    let err = items[0].as_ref().unwrap_err();
    assert_eq!(err.class(), ErrorClass::Server);
    assert!(std::error::Error::source(err).is_some());
    let items = run_frames(&[event("somethingNew", "not even json"), answer()[7].clone()]);
    assert_eq!(items.len(), 1, "unknown events are skipped");
}

#[test]
fn http_errors_are_classified_by_x_amzn_errortype() {
    let error = |status: u16, kind: Option<&str>, message: &str| {
        let mut headers = HeaderMap::new();
        if let Some(kind) = kind {
            headers.insert("x-amzn-errortype", kind.parse().unwrap());
        }
        headers.insert("retry-after", "3".parse().unwrap());
        let body = json!({ "message": message }).to_string();
        Bedrock::http_error(
            StatusCode::from_u16(status).unwrap(),
            headers,
            body.as_bytes(),
            &[],
        )
    };
    let throttled = error(
        429,
        Some("ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/"),
        "Too many requests, please wait before trying again.",
    );
    assert_eq!(throttled.class(), ErrorClass::RateLimited);
    assert_eq!(throttled.code(), Some("ThrottlingException"));
    assert_eq!(throttled.retry_after(), None);
    assert_eq!(throttled.status(), Some(StatusCode::TOO_MANY_REQUESTS));
    assert!(throttled.message().starts_with("Too many requests"));
    let too_long = error(
        400,
        Some("ValidationException"),
        "Input is too long for requested model.",
    );
    assert_eq!(too_long.class(), ErrorClass::ContextLength);
    let denied = error(403, Some("AccessDeniedException"), "no");
    assert_eq!(denied.class(), ErrorClass::Client);
    let unavailable = error(503, Some("ServiceUnavailableException"), "busy");
    assert_eq!(unavailable.class(), ErrorClass::Overloaded);
    let quota = error(400, Some("ServiceQuotaExceededException"), "quota");
    assert!(!quota.class().is_retryable());
    let proxy = error(502, None, "bad gateway");
    assert_eq!(proxy.class(), ErrorClass::Server);
}

#[test]
fn decoded_json_events_go_through_the_same_mapping() {
    let mut parser = ConverseParser::default();
    let Ok(Step::Chunk(chunk)) = parser.parse_json_event(
        r#"{"contentBlockDelta":{"contentBlockIndex":0,"delta":{"text":"Let"}}}"#,
    ) else {
        panic!("expected a chunk");
    };
    assert_eq!(chunk.text, "Let");
    assert!(!parser.stopped());
    assert!(parser
        .parse_json_event(r#"{"messageStop":{"stopReason":"end_turn"}}"#)
        .is_ok());
    assert!(parser.stopped());
    let err = parser
        .parse_json_event(r#"{"throttlingException":{"message":"slow down"}}"#)
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::RateLimited);
    assert!(parser.parse_json_event(r#"{"a":{},"b":{}}"#).is_err());
    assert!(parser.parse_json_event("[]").is_err());
}

#[test]
fn body_maps_system_inference_config_tools_and_extras() {
    let client = Bedrock::builder()
        .region("us-east-1")
        .credentials(Credentials::new("AKID", "SECRET", None, None, "test"))
        .build()
        .unwrap();
    let body = client.body(
        &ChatRequest::new("anthropic.claude-3-haiku-20240307-v1:0")
            .with_system("be brief")
            .with_user("hi")
            .with_assistant("hello")
            .with_max_tokens(9)
            .with_tools(json!([{"toolSpec": {"name": "f"}}]))
            .with_extra("additionalModelRequestFields", json!({"top_k": 5})),
    );
    assert_eq!(body["system"], json!([{"text": "be brief"}]));
    assert_eq!(body["messages"][1]["role"], json!("assistant"));
    assert_eq!(body["messages"][0]["content"], json!([{"text": "hi"}]));
    assert_eq!(body["inferenceConfig"]["maxTokens"], json!(9));
    assert_eq!(
        body["toolConfig"]["tools"][0]["toolSpec"]["name"],
        json!("f")
    );
    assert!(body.get("tools").is_none());
    assert_eq!(body["additionalModelRequestFields"]["top_k"], json!(5));
}

#[test]
fn model_ids_and_arns_are_one_encoded_path_segment() {
    assert_eq!(
        encode_segment("anthropic.claude-3-haiku-20240307-v1:0"),
        "anthropic.claude-3-haiku-20240307-v1%3A0"
    );
    assert_eq!(
        encode_segment("arn:aws:bedrock:us-east-1:1:inference-profile/us.x"),
        "arn%3Aaws%3Abedrock%3Aus-east-1%3A1%3Ainference-profile%2Fus.x"
    );
    assert_eq!(encode_segment("../x?y#z"), "..%2Fx%3Fy%23z");
}

#[test]
fn secrets_never_appear_in_debug_output_and_bad_regions_are_refused() {
    let builder = Bedrock::builder()
        .region("eu-west-3")
        .credentials(Credentials::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI",
            Some("SESSIONTOKEN".into()),
            None,
            "test",
        ));
    let text = format!("{builder:?}");
    assert!(
        !text.contains("wJalrXUtnFEMI") && !text.contains("SESSIONTOKEN"),
        "{text}"
    );
    let client = builder.build().unwrap();
    assert_eq!(
        client.endpoint.base_url(),
        "https://bedrock-runtime.eu-west-3.amazonaws.com"
    );
    let text = format!("{client:?}");
    assert!(
        !text.contains("wJalrXUtnFEMI") && !text.contains("SESSIONTOKEN"),
        "{text}"
    );
    let keyed = Bedrock::builder()
        .region("us-east-1")
        .api_key("bedrock-api-key-123");
    assert!(!format!("{keyed:?}").contains("bedrock-api-key-123"));
    assert!(!format!("{:?}", keyed.build().unwrap()).contains("bedrock-api-key-123"));
    for region in ["us-east-1/../x", "US-EAST-1", ""] {
        assert!(
            matches!(
                Bedrock::builder().region(region).api_key("k").build(),
                Err(ConfigError::InvalidBaseUrl(_))
            ),
            "{region:?}"
        );
    }
}
