#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| enclavemesh_fuzz_targets::envelope_open(data));
