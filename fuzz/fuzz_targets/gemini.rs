#![no_main]
use streamgate_providers::gemini::GenerateParser;
libfuzzer_sys::fuzz_target!(|data: &[u8]| streamgate_fuzz::sse_parser(GenerateParser::default, data));
