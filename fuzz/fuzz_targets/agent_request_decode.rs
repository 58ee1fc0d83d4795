#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| enclavemesh_fuzz_targets::agent_request_decode(data));
