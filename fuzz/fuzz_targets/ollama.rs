#![no_main]
use streamgate_providers::ollama::OllamaParser;
libfuzzer_sys::fuzz_target!(|data: &[u8]| streamgate_fuzz::ndjson_parser(OllamaParser::default, data));
