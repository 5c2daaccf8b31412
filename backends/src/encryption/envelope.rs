//! The envelope: how one artifact is sealed, and how it is opened again.
//!
//! Each object gets its own random 256-bit data key. The payload is the
//! object encrypted with it in 64 KiB segments (the STREAM construction of
//! Hoang, Reyhanitabar, Rogaway and Vizár over AES-256-GCM): segment `i`'s
//! nonce is a random 7-byte prefix, `i` as 4 bytes and a last-segment flag,
//! and every segment authenticates the payload header. A flipped byte fails
//! its segment; a dropped, repeated or reordered segment fails on its
//! counter; a cut at a segment boundary fails on the flag. Nothing is
//! released before the segment that holds it has been authenticated.
//!
//! ```text
//! payload  = "TSQENC\0\x01" ‖ prefix[7] ‖ segment_len u32 ‖ segments…
//! segment  = AES-256-GCM(data key, prefix ‖ i u32 ‖ last u8, aad = header)
//! record   = {"format", "cipher", "key_id", "wrapped"}       (<path>.key)
//! wrapped  = AES-256-GCM(KEK, random nonce,
//!              data key ‖ prefix ‖ size u64 ‖ sha256 hex,
//!              aad = format ‖ key id ‖ path)
//! ```
//!
//! The record is the only part that names the key-encryption key, so a
//! rotation rewrites records, never payloads. The wrap authenticates the
//! artifact's path, so a record moved onto another object does not open,
//! and it carries the plaintext's size and digest, so neither is stored in
//! the clear.

use super::keys::{Kek, KeyId, Keyring};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use serde::{Deserialize, Serialize};
use tracseq_core::ports::ArtifactPath;
use tracseq_core::{Error, Result};
use zeroize::Zeroizing;

/// First bytes of every sealed payload.
pub const MAGIC: &[u8; 8] = b"TSQENC\0\x01";
/// Plaintext bytes per segment.
pub const SEGMENT: usize = 64 * 1024;
const TAG: usize = 16;
const PREFIX: usize = 7;
pub const HEADER: usize = MAGIC.len() + PREFIX + 4;
const FORMAT: &str = "tracseq-ml envelope v1";
const CIPHER: &str = "AES-256-GCM";
/// data key ‖ prefix ‖ size ‖ sha256 hex
const WRAPPED_LEN: usize = 32 + PREFIX + 8 + 64;

/// An artifact that failed authentication: it is refused, never served.
pub fn tampered(path: &str, why: &str) -> Error {
    Error::Internal(format!(
        "artifact '{path}' {why}; it was altered, truncated or damaged and is refused"
    ))
}

/// What the store writes for one sealed artifact.
pub struct Sealed {
    pub payload: Vec<u8>,
    pub record: Vec<u8>,
    pub sha256: String,
    pub size: u64,
}

/// The `<path>.key` record as stored.
#[derive(Serialize, Deserialize)]
struct Record {
    format: String,
    cipher: String,
    key_id: String,
    /// base64 of nonce ‖ ciphertext ‖ tag.
    wrapped: String,
}

fn wrap_aad(key_id: &KeyId, path: &ArtifactPath) -> Vec<u8> {
    let mut aad = Vec::with_capacity(FORMAT.len() + 20 + path.as_str().len());
    aad.extend_from_slice(FORMAT.as_bytes());
    aad.push(0);
    aad.extend_from_slice(key_id.as_str().as_bytes());
    aad.push(0);
    aad.extend_from_slice(path.as_str().as_bytes());
    aad
}

fn encode_record(kek: &Kek, path: &ArtifactPath, secret: &[u8]) -> Result<Vec<u8>> {
    use base64::Engine;
    let wrapped = kek.seal(&wrap_aad(kek.id(), path), secret)?;
    let record = Record {
        format: FORMAT.into(),
        cipher: CIPHER.into(),
        key_id: kek.id().to_string(),
        wrapped: base64::engine::general_purpose::STANDARD.encode(wrapped),
    };
    Ok(serde_json::to_vec(&record)?)
}

fn decode_record(path: &ArtifactPath, bytes: &[u8]) -> Result<(KeyId, Vec<u8>)> {
    use base64::Engine;
    let bad = || tampered(path.as_str(), "has a key record that does not parse");
    let r: Record = serde_json::from_slice(bytes).map_err(|_| bad())?;
    if r.format != FORMAT || r.cipher != CIPHER {
        return Err(bad());
    }
    let id = KeyId::parse(&r.key_id).ok_or_else(bad)?;
    let wrapped = base64::engine::general_purpose::STANDARD
        .decode(r.wrapped)
        .map_err(|_| bad())?;
    Ok((id, wrapped))
}

/// The id of the key a record is wrapped under, without opening it.
pub fn record_key_id(path: &ArtifactPath, record: &[u8]) -> Result<KeyId> {
    Ok(decode_record(path, record)?.0)
}

fn segment_key(dek: &[u8]) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, dek).expect("32 bytes is an AES-256 key"))
}

fn nonce(prefix: &[u8; PREFIX], index: u32, last: bool) -> Nonce {
    let mut n = [0u8; 12];
    n[..PREFIX].copy_from_slice(prefix);
    n[PREFIX..PREFIX + 4].copy_from_slice(&index.to_be_bytes());
    n[11] = u8::from(last);
    Nonce::assume_unique_for_key(n)
}

fn header(prefix: &[u8; PREFIX]) -> [u8; HEADER] {
    let mut h = [0u8; HEADER];
    h[..MAGIC.len()].copy_from_slice(MAGIC);
    h[MAGIC.len()..MAGIC.len() + PREFIX].copy_from_slice(prefix);
    h[MAGIC.len() + PREFIX..].copy_from_slice(&(SEGMENT as u32).to_be_bytes());
    h
}

/// Segments that hold `size` plaintext bytes (an empty object is one empty
/// last segment).
fn segments(size: u64) -> u64 {
    size.div_ceil(SEGMENT as u64).max(1)
}

/// The payload's length for `size` plaintext bytes.
pub fn sealed_len(size: u64) -> u64 {
    HEADER as u64 + size + TAG as u64 * segments(size)
}

/// Seals `plaintext` for `path` under `kek`.
pub fn seal(kek: &Kek, path: &ArtifactPath, plaintext: &[u8]) -> Result<Sealed> {
    let size = plaintext.len() as u64;
    if segments(size) > u64::from(u32::MAX) {
        return Err(Error::Invalid(format!(
            "artifact '{path}' is too large to encrypt ({size} bytes)"
        )));
    }
    let mut secret = Zeroizing::new([0u8; WRAPPED_LEN]);
    super::keys::fill_random(&mut secret[..32 + PREFIX])?;
    let mut prefix = [0u8; PREFIX];
    prefix.copy_from_slice(&secret[32..32 + PREFIX]);
    let sha256 = tracseq_core::digest::sha256_hex(plaintext);
    secret[32 + PREFIX..32 + PREFIX + 8].copy_from_slice(&size.to_be_bytes());
    secret[32 + PREFIX + 8..].copy_from_slice(sha256.as_bytes());

    let key = segment_key(&secret[..32]);
    let head = header(&prefix);
    let mut payload = Vec::with_capacity(sealed_len(size) as usize);
    payload.extend_from_slice(&head);
    let count = segments(size) as usize;
    for i in 0..count {
        let chunk = &plaintext
            [(i * SEGMENT).min(plaintext.len())..((i + 1) * SEGMENT).min(plaintext.len())];
        let start = payload.len();
        payload.extend_from_slice(chunk);
        let tag = key
            .seal_in_place_separate_tag(
                nonce(&prefix, i as u32, i + 1 == count),
                Aad::from(&head[..]),
                &mut payload[start..],
            )
            .map_err(|_| Error::Internal("AES-GCM sealing failed".into()))?;
        payload.extend_from_slice(tag.as_ref());
    }
    Ok(Sealed {
        payload,
        record: encode_record(kek, path, &secret[..])?,
        sha256,
        size,
    })
}

/// A record opened with the keyring: what is needed to read the payload.
#[derive(Clone)]
pub struct Opened {
    path: String,
    key: LessSafeKey,
    prefix: [u8; PREFIX],
    pub size: u64,
    pub sha256: String,
    pub key_id: KeyId,
}

/// The secret half of a record (data key, prefix, size, digest), unwrapped
/// with the key its id names, and that id.
fn unwrap_secret(
    keyring: &Keyring,
    path: &ArtifactPath,
    record: &[u8],
) -> Result<(KeyId, Zeroizing<Vec<u8>>)> {
    let (id, wrapped) = decode_record(path, record)?;
    let kek = keyring.find(&id).ok_or_else(|| {
        let held: Vec<String> = keyring.ids().iter().map(|k| k.to_string()).collect();
        Error::Unavailable(format!(
            "artifact '{path}' is sealed under key {id}, which the {} does not hold (it holds {}): \
             a wrong or missing key-encryption key",
            keyring.source(),
            held.join(", ")
        ))
    })?;
    let secret = kek
        .open(&wrap_aad(&id, path), &wrapped)
        .filter(|s| s.len() == WRAPPED_LEN)
        .ok_or_else(|| {
            tampered(
                path.as_str(),
                &format!("has a data key that does not open under key {id}"),
            )
        })?;
    Ok((id, secret))
}

/// Opens `<path>.key`: finds its key in the keyring and unwraps the data key.
pub fn open_record(keyring: &Keyring, path: &ArtifactPath, record: &[u8]) -> Result<Opened> {
    let (id, secret) = unwrap_secret(keyring, path, record)?;
    let mut prefix = [0u8; PREFIX];
    prefix.copy_from_slice(&secret[32..32 + PREFIX]);
    let size = u64::from_be_bytes(
        secret[32 + PREFIX..32 + PREFIX + 8]
            .try_into()
            .expect("8 bytes"),
    );
    let sha256 = String::from_utf8(secret[32 + PREFIX + 8..].to_vec())
        .map_err(|_| tampered(path.as_str(), "has a key record with a bad digest"))?;
    Ok(Opened {
        path: path.to_string(),
        key: segment_key(&secret[..32]),
        prefix,
        size,
        sha256,
        key_id: id,
    })
}

/// The record re-wrapped under `kek` (same data key, same payload), or
/// `None` when it already is.
pub fn rewrap(
    keyring: &Keyring,
    kek: &Kek,
    path: &ArtifactPath,
    record: &[u8],
) -> Result<Option<Vec<u8>>> {
    if record_key_id(path, record)? == *kek.id() {
        return Ok(None);
    }
    let (_, secret) = unwrap_secret(keyring, path, record)?;
    Ok(Some(encode_record(kek, path, &secret)?))
}

impl Opened {
    /// The payload's expected length.
    pub fn sealed_len(&self) -> u64 {
        sealed_len(self.size)
    }

    /// Whether `head` (the payload's first [`HEADER`] bytes) is the header
    /// this record was written with.
    pub fn check_header(&self, head: &[u8]) -> Result<()> {
        if head.len() < HEADER || &head[..MAGIC.len()] != MAGIC {
            return Err(tampered(
                &self.path,
                "does not start with an encryption header",
            ));
        }
        if head[MAGIC.len()..MAGIC.len() + PREFIX] != self.prefix
            || head[MAGIC.len() + PREFIX..HEADER] != (SEGMENT as u32).to_be_bytes()
        {
            // The record of another version of this path: a writer is
            // replacing the object right now, or the two were mixed up.
            return Err(Error::Unavailable(format!(
                "artifact '{}' does not match its key record (it is being replaced, or the two \
                 were mixed up); try again, and if it persists the artifact is damaged",
                self.path
            )));
        }
        Ok(())
    }

    /// The refusal of a payload whose length does not fit the record.
    pub fn wrong_length(&self, len: u64) -> Error {
        tampered(
            &self.path,
            &format!(
                "is {len} bytes where its key record says {}",
                self.sealed_len()
            ),
        )
    }

    /// Decrypts segment `index` (ciphertext and tag) onto the end of `out`.
    fn open_segment(
        &self,
        head: &[u8],
        index: u64,
        last: bool,
        ct: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<()> {
        let start = out.len();
        out.extend_from_slice(ct);
        match self.key.open_in_place(
            nonce(&self.prefix, index as u32, last),
            Aad::from(head),
            &mut out[start..],
        ) {
            Ok(pt) => {
                let n = pt.len();
                out.truncate(start + n);
                Ok(())
            }
            Err(_) => {
                out.truncate(start);
                Err(tampered(
                    &self.path,
                    &format!("fails authentication in segment {index}"),
                ))
            }
        }
    }

    /// The whole plaintext of `payload`, or the reason it is refused.
    pub fn open_all(&self, payload: &[u8]) -> Result<Vec<u8>> {
        if payload.len() as u64 != self.sealed_len() {
            return Err(self.wrong_length(payload.len() as u64));
        }
        let head = &payload[..HEADER];
        self.check_header(head)?;
        // Decrypted in place in the output, one copy of the payload in all.
        let mut out = Vec::with_capacity(self.size as usize);
        let body = &payload[HEADER..];
        let count = segments(self.size);
        for (i, ct) in body.chunks(SEGMENT + TAG).enumerate() {
            let i = i as u64;
            self.open_segment(head, i, i + 1 == count, ct, &mut out)?;
        }
        Ok(out)
    }
}

/// Decrypts a payload that arrives in chunks, releasing each segment once
/// it is authenticated. The last segment is only known at the end, so one
/// segment is always held back until [`Decryptor::finish`].
pub struct Decryptor {
    opened: Opened,
    head: Option<[u8; HEADER]>,
    buf: Vec<u8>,
    index: u64,
    released: u64,
}

impl Decryptor {
    pub fn new(opened: Opened) -> Self {
        Decryptor {
            opened,
            head: None,
            buf: Vec::new(),
            index: 0,
            released: 0,
        }
    }

    /// Takes the next chunk; returns the plaintext it completed.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<u8>> {
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        if self.head.is_none() {
            if self.buf.len() < HEADER {
                return Ok(out);
            }
            self.opened.check_header(&self.buf)?;
            let mut h = [0u8; HEADER];
            h.copy_from_slice(&self.buf[..HEADER]);
            self.head = Some(h);
            self.buf.drain(..HEADER);
        }
        let head = self.head.expect("header read");
        let full = SEGMENT + TAG;
        let mut used = 0;
        while self.buf.len() - used > full {
            self.opened.open_segment(
                &head,
                self.index,
                false,
                &self.buf[used..used + full],
                &mut out,
            )?;
            used += full;
            self.index += 1;
        }
        self.buf.drain(..used);
        self.released += out.len() as u64;
        if self.released > self.opened.size {
            return Err(tampered(
                &self.opened.path,
                "is longer than its key record says",
            ));
        }
        Ok(out)
    }

    /// The last segment's plaintext, once the payload has ended.
    pub fn finish(mut self) -> Result<Vec<u8>> {
        let Some(head) = self.head else {
            return Err(tampered(
                &self.opened.path,
                "is truncated before its header ends",
            ));
        };
        let mut out = Vec::new();
        let buf = std::mem::take(&mut self.buf);
        self.opened
            .open_segment(&head, self.index, true, &buf, &mut out)?;
        if self.released + out.len() as u64 != self.opened.size {
            return Err(tampered(
                &self.opened.path,
                "is not as long as its key record says",
            ));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encryption::keys::{generate_key_line, Keyring};

    fn ring() -> Keyring {
        Keyring::from_text(&generate_key_line().unwrap().1).unwrap()
    }

    fn path(p: &str) -> ArtifactPath {
        ArtifactPath::parse(p).unwrap()
    }

    fn body(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn sealed_objects_of_every_size_open_to_the_same_bytes() {
        let ring = ring();
        let p = path("datasets/d/data.csv");
        for n in [
            0,
            1,
            SEGMENT - 1,
            SEGMENT,
            SEGMENT + 1,
            3 * SEGMENT,
            3 * SEGMENT + 5,
        ] {
            let plain = body(n);
            let s = seal(&ring.active(), &p, &plain).unwrap();
            assert_eq!(s.payload.len() as u64, sealed_len(n as u64), "{n}");
            let o = open_record(&ring, &p, &s.record).unwrap();
            assert_eq!((o.size, o.sha256.clone()), (n as u64, s.sha256.clone()));
            assert_eq!(o.open_all(&s.payload).unwrap(), plain, "{n}");
            // In chunks of every awkward size, too.
            for chunk in [1, 7, HEADER, SEGMENT + TAG, 100_000] {
                let mut d = Decryptor::new(o.clone());
                let mut out = Vec::new();
                for c in s.payload.chunks(chunk) {
                    out.extend(d.push(c).unwrap());
                }
                out.extend(d.finish().unwrap());
                assert_eq!(out, plain, "{n} in chunks of {chunk}");
            }
        }
    }

    #[test]
    fn the_payload_is_not_the_plaintext() {
        let ring = ring();
        let plain = b"sample_id,concentration\nS1,12.5\n".repeat(100);
        let s = seal(&ring.active(), &path("datasets/d/data.csv"), &plain).unwrap();
        let needle = b"concentration";
        assert!(!s.payload.windows(needle.len()).any(|w| w == needle));
        assert!(!String::from_utf8_lossy(&s.record).contains(&s.sha256));
    }

    #[test]
    fn every_flipped_byte_is_refused_naming_the_object() {
        let ring = ring();
        let p = path("models/m/1/model.json");
        let s = seal(&ring.active(), &p, &body(SEGMENT + 100)).unwrap();
        let o = open_record(&ring, &p, &s.record).unwrap();
        for i in (0..s.payload.len())
            .step_by(997)
            .chain([0, HEADER, s.payload.len() - 1])
        {
            let mut bad = s.payload.clone();
            bad[i] ^= 0x01;
            let err = o.open_all(&bad).unwrap_err().to_string();
            assert!(err.contains("models/m/1/model.json"), "byte {i}: {err}");
            assert!(stream_open(&o, &bad).is_err(), "streamed, byte {i}");
        }
    }

    /// The streaming path, which cannot check the length up front.
    fn stream_open(o: &Opened, payload: &[u8]) -> Result<Vec<u8>> {
        let mut d = Decryptor::new(o.clone());
        let mut out = Vec::new();
        for c in payload.chunks(4096) {
            out.extend(d.push(c)?);
        }
        out.extend(d.finish()?);
        Ok(out)
    }

    #[test]
    fn truncation_and_extension_are_refused_even_at_a_segment_boundary() {
        let ring = ring();
        let p = path("models/m/1/model.json");
        let s = seal(&ring.active(), &p, &body(2 * SEGMENT + 10)).unwrap();
        let o = open_record(&ring, &p, &s.record).unwrap();
        let boundary = HEADER + SEGMENT + TAG;
        for cut in [
            0,
            5,
            HEADER,
            boundary,
            2 * boundary - HEADER,
            s.payload.len() - 1,
        ] {
            assert!(o.open_all(&s.payload[..cut]).is_err(), "cut at {cut}");
            assert!(
                stream_open(&o, &s.payload[..cut]).is_err(),
                "streamed, cut at {cut}"
            );
        }
        let mut longer = s.payload.clone();
        longer.extend_from_slice(&[0; 40]);
        assert!(o.open_all(&longer).is_err());
        assert!(stream_open(&o, &longer).is_err());
        // A whole extra segment sealed under another key cannot be appended.
        let other = seal(&ring.active(), &p, &body(SEGMENT)).unwrap();
        let mut appended = s.payload.clone();
        appended.extend_from_slice(&other.payload[HEADER..]);
        assert!(stream_open(&o, &appended).is_err());
        // Segments swapped.
        let mut swapped = s.payload[..HEADER].to_vec();
        swapped.extend_from_slice(&s.payload[boundary..boundary + SEGMENT + TAG]);
        swapped.extend_from_slice(&s.payload[HEADER..boundary]);
        swapped.extend_from_slice(&s.payload[boundary + SEGMENT + TAG..]);
        assert!(o.open_all(&swapped).is_err());
        assert!(stream_open(&o, &swapped).is_err());
    }

    #[test]
    fn a_wrong_key_is_named_and_a_moved_record_does_not_open() {
        let (ring, other) = (ring(), ring());
        let p = path("models/m/1/model.json");
        let s = seal(&ring.active(), &p, b"weights").unwrap();
        let err = open_record(&other, &p, &s.record)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("models/m/1/model.json"), "{err}");
        assert!(err.contains(ring.ids()[0].as_str()), "{err}");
        let moved = open_record(&ring, &path("models/m/2/model.json"), &s.record);
        assert!(matches!(moved, Err(Error::Internal(_))));
        let mut record = s.record.clone();
        let n = record.len();
        record[n - 5] ^= 0x02;
        assert!(open_record(&ring, &p, &record).is_err());
    }

    #[test]
    fn a_rewrapped_record_opens_the_same_payload_under_the_new_key() {
        let old = generate_key_line().unwrap().1;
        let new = generate_key_line().unwrap().1;
        let before = Keyring::from_text(&old).unwrap();
        let both = Keyring::from_text(&format!("{}\n{}", *new, *old)).unwrap();
        let p = path("experiments/e/trials/1/result.json");
        let s = seal(&before.active(), &p, b"{\"score\":0.9}").unwrap();
        let record = rewrap(&both, &both.active(), &p, &s.record)
            .unwrap()
            .unwrap();
        assert!(rewrap(&both, &both.active(), &p, &record)
            .unwrap()
            .is_none());
        let only_new = Keyring::from_text(&new).unwrap();
        let o = open_record(&only_new, &p, &record).unwrap();
        assert_eq!(o.open_all(&s.payload).unwrap(), b"{\"score\":0.9}");
        assert_eq!(&o.key_id, only_new.active().id());
    }
}
