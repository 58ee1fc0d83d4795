#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| enclavemesh_fuzz_targets::attestation_verify(data));
