#![no_main]
use streamgate_providers::openai::ChatParser;
libfuzzer_sys::fuzz_target!(|data: &[u8]| streamgate_fuzz::sse_parser(ChatParser::default, data));
