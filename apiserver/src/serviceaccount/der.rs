//! Just enough DER to read and write key structures (SPKI, SEC1, PKCS#1, PKCS#8 headers).

/// Universal tags used by key structures.
pub(crate) const INTEGER: u8 = 0x02;
pub(crate) const BIT_STRING: u8 = 0x03;
pub(crate) const OCTET_STRING: u8 = 0x04;
pub(crate) const NULL: u8 = 0x05;
pub(crate) const OID: u8 = 0x06;
pub(crate) const SEQUENCE: u8 = 0x30;
/// `[0]` and `[1]` explicit context tags (SEC1 parameters and public key).
pub(crate) const CONTEXT_0: u8 = 0xa0;
pub(crate) const CONTEXT_1: u8 = 0xa1;

/// The body of OID 1.2.840.113549.1.1.1 (rsaEncryption).
pub(crate) const OID_RSA_ENCRYPTION: &[u8] =
    &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
/// The body of OID 1.2.840.10045.2.1 (id-ecPublicKey).
pub(crate) const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
/// The body of OID 1.2.840.10045.3.1.7 (prime256v1, P-256).
pub(crate) const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// The body of OID 1.3.132.0.34 (secp384r1, P-384).
pub(crate) const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];

/// Reads consecutive TLVs from a byte slice.
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Self { rest: data }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// The next element as (tag, contents).
    pub(crate) fn next(&mut self) -> Option<(u8, &'a [u8])> {
        let (&tag, rest) = self.rest.split_first()?;
        let (&first, mut rest) = rest.split_first()?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let count = usize::from(first & 0x7f);
            if count == 0 || count > 4 || rest.len() < count {
                return None;
            }
            let (len_bytes, after) = rest.split_at(count);
            rest = after;
            len_bytes
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b))
        };
        if rest.len() < len {
            return None;
        }
        let (contents, after) = rest.split_at(len);
        self.rest = after;
        Some((tag, contents))
    }

    /// The contents of the next element, which must carry `tag`.
    pub(crate) fn read(&mut self, tag: u8) -> Option<&'a [u8]> {
        match self.next()? {
            (t, contents) if t == tag => Some(contents),
            _ => None,
        }
    }
}

/// Reads the single element with `tag` that makes up all of `data`.
pub(crate) fn single(data: &[u8], tag: u8) -> Option<&[u8]> {
    let mut r = Reader::new(data);
    let contents = r.read(tag)?;
    r.is_empty().then_some(contents)
}

/// Encodes one element.
pub(crate) fn tlv(tag: u8, contents: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(contents.len() + 6);
    out.push(tag);
    let len = contents.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(contents);
    out
}

/// Encodes a SEQUENCE of already encoded elements.
pub(crate) fn sequence(parts: &[&[u8]]) -> Vec<u8> {
    tlv(SEQUENCE, &parts.concat())
}

/// Encodes a BIT STRING with no unused bits.
pub(crate) fn bit_string(bits: &[u8]) -> Vec<u8> {
    let mut contents = Vec::with_capacity(bits.len() + 1);
    contents.push(0);
    contents.extend_from_slice(bits);
    tlv(BIT_STRING, &contents)
}

/// An unsigned big-endian integer without leading zero bytes (keeps one byte for zero).
pub(crate) fn trim_unsigned(bytes: &[u8]) -> &[u8] {
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    if skip == bytes.len() {
        &bytes[bytes.len().saturating_sub(1)..]
    } else {
        &bytes[skip..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lengths_round_trip() {
        for len in [0usize, 1, 127, 128, 255, 256, 70_000] {
            let body = vec![7u8; len];
            let encoded = tlv(OCTET_STRING, &body);
            assert_eq!(
                single(&encoded, OCTET_STRING),
                Some(body.as_slice()),
                "{len}"
            );
        }
    }

    #[test]
    fn truncated_input_is_rejected() {
        let encoded = tlv(SEQUENCE, &[1, 2, 3]);
        assert!(Reader::new(&encoded[..encoded.len() - 1]).next().is_none());
        assert!(single(&[0x30, 0x85, 0, 0, 0, 0, 0], SEQUENCE).is_none());
    }

    #[test]
    fn trim_unsigned_keeps_a_zero() {
        assert_eq!(trim_unsigned(&[0, 0, 1, 0]), &[1, 0]);
        assert_eq!(trim_unsigned(&[0, 0]), &[0]);
        assert_eq!(trim_unsigned(&[]), &[] as &[u8]);
    }
}
