//! Payload masking, RFC 6455 section 5.3.
//!
//! Every frame a client sends is masked: the payload is XORed with a 4-byte
//! key that travels in the frame header. Byte `i` of the payload is
//! transformed as `payload[i] ^ key[i % 4]`; applying the same operation
//! twice gives back the original bytes, so one function both masks and
//! unmasks.
//!
//! The payload of a large frame reaches the server in many reads, so the
//! function takes the `offset` of the first byte within the frame payload:
//! it is what keeps the key aligned across reads.
//!
//! This is a hot loop (every byte from every client goes through it), so it
//! works on eight bytes at a time: the key is repeated to fill a `u64`, and
//! the compiler turns the loop over `chunks_exact_mut(8)` into vector XORs.

/// XOR `data` with the masking `key`, as if `data` started at byte `offset`
/// of the frame payload.
///
/// RFC 6455 5.3: "octet i of the transformed data ("transformed-octet-i") is
/// the XOR of octet i of the original data ("original-octet-i") with octet at
/// index i modulo 4 of the masking key ("masking-key-octet-j")".
pub fn apply_mask(data: &mut [u8], key: [u8; 4], offset: usize) {
    // Rotate the key so that key[0] applies to data[0].
    let shift = offset % 4;
    let key = [
        key[shift],
        key[(shift + 1) % 4],
        key[(shift + 2) % 4],
        key[(shift + 3) % 4],
    ];
    let wide = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let mut words = data.chunks_exact_mut(8);
    for word in &mut words {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(word);
        word.copy_from_slice(&(u64::from_ne_bytes(bytes) ^ wide).to_ne_bytes());
    }
    // A chunk of eight leaves the key phase unchanged, so the tail starts at key[0].
    for (i, byte) in words.into_remainder().iter_mut().enumerate() {
        *byte ^= key[i % 4];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask_bytewise(data: &mut [u8], key: [u8; 4], offset: usize) {
        for (i, b) in data.iter_mut().enumerate() {
            *b ^= key[(offset + i) % 4];
        }
    }

    #[test]
    fn rfc_example_hello() {
        // RFC 6455 5.7: a masked "Hello" with key 37 fa 21 3d.
        let mut payload = [0x7f, 0x9f, 0x4d, 0x51, 0x58];
        apply_mask(&mut payload, [0x37, 0xfa, 0x21, 0x3d], 0);
        assert_eq!(&payload, b"Hello");
    }

    #[test]
    fn matches_bytewise_for_every_length_and_offset() {
        let key = [0xde, 0xad, 0xbe, 0xef];
        for len in 0..40 {
            for offset in 0..8 {
                let original: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
                let mut fast = original.clone();
                let mut slow = original.clone();
                apply_mask(&mut fast, key, offset);
                mask_bytewise(&mut slow, key, offset);
                assert_eq!(fast, slow, "len {len} offset {offset}");
            }
        }
    }

    #[test]
    fn split_masking_equals_whole() {
        let key = [1, 2, 3, 4];
        let original: Vec<u8> = (0..100u8).collect();
        let mut whole = original.clone();
        apply_mask(&mut whole, key, 0);
        for split in 0..original.len() {
            let mut parts = original.clone();
            let (a, b) = parts.split_at_mut(split);
            apply_mask(a, key, 0);
            apply_mask(b, key, split);
            assert_eq!(parts, whole, "split at {split}");
        }
    }
}
