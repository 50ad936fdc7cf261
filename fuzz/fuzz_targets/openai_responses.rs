#![no_main]
use streamgate_providers::openai::ResponsesParser;
libfuzzer_sys::fuzz_target!(|data: &[u8]| streamgate_fuzz::sse_parser(ResponsesParser::default, data));
