//! Frame splitting and request decoding (every API and version) on arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    skiff_wire::fuzz_bodies::frame_and_request(data);
});
