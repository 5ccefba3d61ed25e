//! Reads a receive-pack body in one piece and split in two (the first input byte picks the
//! split point): both must give the same answer.
#![no_main]

use gitgate_policy::git::receive_pack::{CommandReader, Limits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&split, body)) = data.split_first() else {
        return;
    };
    let cut = usize::from(split) * body.len() / 255;
    let read = |pieces: &[&[u8]]| {
        let mut reader = CommandReader::new(Limits {
            max_commands: 8,
            max_header_bytes: 2048,
        });
        pieces
            .iter()
            .try_for_each(|piece| reader.feed(piece).map(drop))?;
        reader.finish()
    };
    assert_eq!(read(&[body]), read(&[&body[..cut], &body[cut..]]));
});
