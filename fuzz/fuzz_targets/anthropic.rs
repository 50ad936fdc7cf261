#![no_main]
use streamgate_providers::anthropic::MessagesParser;
libfuzzer_sys::fuzz_target!(|data: &[u8]| streamgate_fuzz::sse_parser(MessagesParser::default, data));
