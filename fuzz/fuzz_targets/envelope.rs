//! `cargo +nightly fuzz run envelope`: see docs/fuzzing.md. The checks are in
//! src/lib.rs, shared with the corpus replay test (tests/fuzz_corpus.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    secretd_fuzz::envelope(data);
});
