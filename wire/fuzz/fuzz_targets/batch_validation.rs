//! Record batch iteration, validation, decompression and stamping on arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    skiff_wire::fuzz_bodies::batch_validation(data);
});
