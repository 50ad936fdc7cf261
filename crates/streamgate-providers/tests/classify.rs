//! How HTTP status and the body's error type combine into one class, for
//! each provider's overload responses and for the precedence rules
//! (`ErrorClass` in streamgate-core documents them). The bodies are written
//! from the providers' documented error shapes.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use http::{HeaderMap, StatusCode};
use serde_json::{json, Value};
use streamgate_core::ErrorClass;
use streamgate_providers::errors::{error_details, http_error, in_band_error};

fn status_class(status: u16, body: &Value) -> ErrorClass {
    let status = StatusCode::from_u16(status).unwrap();
    http_error(status, HeaderMap::new(), body.to_string().as_bytes(), &[]).class()
}

fn in_band_class(event: &Value) -> ErrorClass {
    in_band_error(error_details(event).unwrap()).class()
}

fn openai_error(message: &str, kind: &str) -> Value {
    json!({"error": {"message": message, "type": kind, "param": null, "code": null}})
}

#[test]
fn openai_503_with_server_error_type_is_overloaded() {
    for message in [
        "The server is overloaded or not ready yet.",
        "The engine is currently overloaded, please try again later",
        "Slow Down",
    ] {
        assert_eq!(
            status_class(503, &openai_error(message, "server_error")),
            ErrorClass::Overloaded,
            "{message}"
        );
    }
}

#[test]
fn openai_500_with_server_error_type_stays_a_server_error() {
    let body = openai_error(
        "The server had an error while processing your request.",
        "server_error",
    );
    assert_eq!(status_class(500, &body), ErrorClass::Server);
}

#[test]
fn azure_503_service_unavailable_is_overloaded() {
    let openai_shape = openai_error("Service Unavailable", "server_error");
    assert_eq!(status_class(503, &openai_shape), ErrorClass::Overloaded);
    let azure_shape = json!({"error": {
        "code": "ServiceUnavailable",
        "message": "The service is temporarily unable to process your request. Please try again later."
    }});
    assert_eq!(status_class(503, &azure_shape), ErrorClass::Overloaded);
    // The same code inside a stream, where there is no status to go by.
    assert_eq!(in_band_class(&azure_shape), ErrorClass::Overloaded);
}

#[test]
fn openai_in_band_overload_is_overloaded_and_other_server_errors_are_not() {
    let overloaded = openai_error("The server is overloaded or not ready yet.", "server_error");
    assert_eq!(in_band_class(&overloaded), ErrorClass::Overloaded);
    let failed = openai_error(
        "The server had an error processing your request.",
        "server_error",
    );
    assert_eq!(in_band_class(&failed), ErrorClass::Server);
}

#[test]
fn anthropic_529_and_its_in_band_overloaded_event_are_overloaded() {
    let body =
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}});
    assert_eq!(status_class(529, &body), ErrorClass::Overloaded);
    assert_eq!(in_band_class(&body), ErrorClass::Overloaded);
    let api_error = json!({"type": "error", "error": {"type": "api_error", "message": "Internal server error"}});
    assert_eq!(status_class(500, &api_error), ErrorClass::Server);
    assert_eq!(in_band_class(&api_error), ErrorClass::Server);
}

#[test]
fn gemini_503_unavailable_is_overloaded_in_a_status_and_in_band() {
    let body = json!({"error": {"code": 503, "message": "The model is overloaded. Please try again later.", "status": "UNAVAILABLE"}});
    assert_eq!(status_class(503, &body), ErrorClass::Overloaded);
    assert_eq!(in_band_class(&body), ErrorClass::Overloaded);
    let internal = json!({"error": {"code": 500, "message": "An internal error has occurred.", "status": "INTERNAL"}});
    assert_eq!(status_class(500, &internal), ErrorClass::Server);
    let deadline = json!({"error": {"code": 504, "message": "Deadline expired.", "status": "DEADLINE_EXCEEDED"}});
    assert_eq!(status_class(504, &deadline), ErrorClass::Timeout);
}

#[test]
fn ollama_503_server_busy_is_overloaded_and_its_500_a_server_error() {
    let busy =
        json!({"error": "server busy, please try again.  maximum pending requests exceeded"});
    assert_eq!(status_class(503, &busy), ErrorClass::Overloaded);
    let failed = json!({"error": "an error was encountered while running the model"});
    assert_eq!(status_class(500, &failed), ErrorClass::Server);
}

#[test]
fn openai_compatible_503s_are_overloaded_whatever_their_body() {
    // A vLLM-style bare error object with a numeric code.
    let bare = json!({"object": "error", "message": "The engine is busy", "type": "ServiceUnavailableError", "param": null, "code": 503});
    assert_eq!(status_class(503, &bare), ErrorClass::Overloaded);
    assert_eq!(
        status_class(503, &json!({"detail": "Service Unavailable"})),
        ErrorClass::Overloaded
    );
    let status = StatusCode::SERVICE_UNAVAILABLE;
    let html = http_error(
        status,
        HeaderMap::new(),
        b"<html>503 Service Unavailable</html>",
        &[],
    );
    assert_eq!(html.class(), ErrorClass::Overloaded);
    // An overload said in words on another 5xx.
    let words = openai_error("Model is overloaded", "server_error");
    assert_eq!(status_class(500, &words), ErrorClass::Overloaded);
}

#[test]
fn a_body_that_says_the_request_cannot_succeed_beats_every_status() {
    let quota = json!({"error": {"message": "You exceeded your current quota", "type": "insufficient_quota", "code": "insufficient_quota"}});
    assert_eq!(status_class(429, &quota), ErrorClass::Client);
    assert_eq!(status_class(503, &quota), ErrorClass::Client);
    let context = json!({"error": {"message": "This model's maximum context length is 8192 tokens", "type": "invalid_request_error", "code": "context_length_exceeded"}});
    assert_eq!(status_class(503, &context), ErrorClass::ContextLength);
}

#[test]
fn a_specific_body_type_beats_the_status() {
    let rate = json!({"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}});
    assert_eq!(status_class(503, &rate), ErrorClass::RateLimited);
    let overloaded =
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}});
    assert_eq!(status_class(500, &overloaded), ErrorClass::Overloaded);
}

#[test]
fn a_specific_status_beats_a_generic_body_type() {
    let server = openai_error("Something went wrong", "server_error");
    assert_eq!(status_class(429, &server), ErrorClass::RateLimited);
    assert_eq!(status_class(504, &server), ErrorClass::Timeout);
    assert_eq!(status_class(408, &server), ErrorClass::Timeout);
    assert_eq!(status_class(502, &server), ErrorClass::Server);
}

#[test]
fn a_generic_body_type_beats_a_generic_status() {
    let invalid = openai_error("Invalid value for 'model'", "invalid_request_error");
    assert_eq!(status_class(500, &invalid), ErrorClass::Client);
    let server = openai_error("Something went wrong", "server_error");
    assert_eq!(status_class(400, &server), ErrorClass::Server);
}

#[test]
fn overloaded_in_words_does_not_turn_a_client_error_retryable() {
    let body = openai_error("Function name 'f' is overloaded", "invalid_request_error");
    assert_eq!(status_class(400, &body), ErrorClass::Client);
    let untyped = json!({"error": "tool overloaded"});
    assert_eq!(status_class(422, &untyped), ErrorClass::Client);
}
