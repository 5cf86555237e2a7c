//! Frame header parsing and writing (RFC 6455 5.2) and masking (5.3).
//!
//! Parse side, on the raw input:
//! - `FrameHeader::parse` never panics and never allocates;
//! - a `Complete` header is at most 14 bytes, every shorter prefix of it is
//!   `Incomplete` asking for more than it has and no more than the header,
//!   and writing the header back gives exactly the bytes it was parsed from
//!   (lengths must be minimal, so header <-> bytes is one-to-one);
//! - `Incomplete { needed }` asks for more than is there, at most 14, and
//!   padding the input up to `needed` makes progress;
//! - an error stays an error however many bytes follow.
//!
//! Write side, on a header built from the input: every header the writer
//! emits parses back to the same header, and `write_frame` emits a header
//! and the payload verbatim.
//!
//! Masking: `apply_mask` over any split with running offsets equals the
//! byte-at-a-time definition of 5.3, and applying it twice restores the data.

#![no_main]

use libfuzzer_sys::fuzz_target;
use socketbox::protocol::frame::{write_frame, FrameHeader, HeaderParse, OpCode, MAX_HEADER_LEN};
use socketbox::protocol::mask::apply_mask;
use socketbox_fuzz::{peak_heap_growth, Choices};

fuzz_target!(|data: &[u8]| {
    parse_side(data);
    write_side(data);
    masking(data);
});

fn parse_side(data: &[u8]) {
    let (parsed, allocated) = peak_heap_growth(|| FrameHeader::parse(data));
    assert_eq!(allocated, 0, "parsing a header allocated");
    match parsed {
        Ok(HeaderParse::Complete { header, header_len }) => {
            assert!(header_len <= data.len().min(MAX_HEADER_LEN));
            assert!(header.rsv <= 0b111);
            assert!(header.payload_len >> 63 == 0);
            assert_eq!(header.opcode.bits(), data[0] & 0x0F);
            assert_eq!(OpCode::from_bits(header.opcode.bits()), header.opcode);
            for short in 0..header_len {
                match FrameHeader::parse(&data[..short]) {
                    Ok(HeaderParse::Incomplete { needed }) => {
                        assert!(needed > short && needed <= header_len, "{short}: {needed}")
                    }
                    other => panic!("prefix of {short} bytes of a header gave {other:?}"),
                }
            }
            let mut written = Vec::new();
            header.write(&mut written);
            assert_eq!(written, &data[..header_len], "{header:?}");
        }
        Ok(HeaderParse::Incomplete { needed }) => {
            assert!(needed > data.len() && needed <= MAX_HEADER_LEN);
            let mut padded = data.to_vec();
            padded.resize(needed, 0);
            if let Ok(HeaderParse::Incomplete { needed: again }) = FrameHeader::parse(&padded) {
                assert!(again > needed, "padding to {needed} bytes made no progress");
            }
        }
        Err(error) => {
            let mut longer = data.to_vec();
            longer.extend_from_slice(&[0xA5; MAX_HEADER_LEN]);
            assert_eq!(FrameHeader::parse(&longer), Err(error));
        }
    }
}

fn write_side(data: &[u8]) {
    let mut choices = Choices::new(data);
    let flags = choices.byte();
    let length_choice = choices.byte();
    let key = choices.array::<4>();
    let wide = u64::from_le_bytes(choices.array::<8>());
    // Aim at the boundaries of the three length forms as well as anywhere.
    let payload_len = match length_choice % 8 {
        0 => wide % 126,
        1 => 126 + wide % (0x1_0000 - 126),
        2 => 125 + wide % 3,
        3 => 0xFFFF + wide % 2,
        4 => u64::MAX >> 1,
        _ => wide >> 1,
    };
    let header = FrameHeader {
        fin: flags & 1 != 0,
        rsv: (flags >> 1) & 0b111,
        opcode: OpCode::from_bits(flags >> 4),
        mask: (length_choice & 0x80 != 0).then_some(key),
        payload_len,
    };
    let mut written = Vec::new();
    header.write(&mut written);
    let length_bytes = match payload_len {
        0..=125 => 0,
        126..=0xFFFF => 2,
        _ => 8,
    };
    let mask_bytes = if header.mask.is_some() { 4 } else { 0 };
    assert_eq!(written.len(), 2 + length_bytes + mask_bytes);
    assert_eq!(
        FrameHeader::parse(&written),
        Ok(HeaderParse::Complete {
            header,
            header_len: written.len()
        })
    );

    let payload = choices.rest();
    let mut frame = Vec::new();
    write_frame(&mut frame, header.opcode, payload);
    let Ok(HeaderParse::Complete {
        header: sent,
        header_len,
    }) = FrameHeader::parse(&frame)
    else {
        panic!("write_frame emitted an unparsable header: {frame:x?}");
    };
    assert!(sent.fin && sent.rsv == 0 && sent.mask.is_none());
    assert_eq!(sent.opcode, header.opcode);
    assert_eq!(sent.payload_len, payload.len() as u64);
    assert_eq!(&frame[header_len..], payload);
}

fn masking(data: &[u8]) {
    let mut choices = Choices::new(data);
    let key = choices.array::<4>();
    let split = usize::from(choices.byte());
    let payload = choices.rest();
    let expected: Vec<u8> = payload
        .iter()
        .enumerate()
        .map(|(i, byte)| byte ^ key[i % 4])
        .collect();
    let mut masked = payload.to_vec();
    let split = split.min(masked.len());
    let (head, tail) = masked.split_at_mut(split);
    apply_mask(head, key, 0);
    apply_mask(tail, key, split);
    assert_eq!(masked, expected);
    apply_mask(&mut masked, key, 0);
    assert_eq!(masked, payload);
}
