//! Key-encryption keys (KEKs): how they are written down, how they are
//! named, and the keyring a process holds.
//!
//! A KEK is 32 random bytes written as 64 hex digits, one per line of a key
//! file (or comma-separated in `TRACSEQ_KEK`). The first key wraps the data
//! keys of new objects; the others are kept so objects wrapped under them
//! still open. Each key is known by an id derived from it (`k` + 16 hex
//! digits of a labelled SHA-256), which is what records, logs and the CLI
//! show: the id names a key without revealing it, and a key that does not
//! match an object's id is known to be the wrong one before any decryption.
//!
//! The key bytes exist only inside ring's AEAD key (and, while a file is
//! parsed or generated, in buffers that are zeroed on drop). Errors about a
//! key file name the file and the line, never its text.

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use sha2::{Digest, Sha256};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};
use tracseq_core::{Error, Result};
use zeroize::Zeroizing;

/// Bytes in a key-encryption key or a data key (AES-256).
pub const KEY_LEN: usize = 32;

/// The variable that may hold the keys instead of a file.
pub const KEK_ENV: &str = "TRACSEQ_KEK";

/// How often a process holding a key file looks at it again, so a key
/// added by `keys rotate` is used by running processes without a restart.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(10);

/// A key's public name: `k` followed by 16 hex digits of
/// SHA-256("tracseq-ml key id\0" ‖ key). Safe to log, print and store.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(String);

impl KeyId {
    fn of(key: &[u8; KEY_LEN]) -> KeyId {
        let mut h = Sha256::new();
        h.update(b"tracseq-ml key id\0");
        h.update(key);
        KeyId(format!("k{}", &hex::encode(h.finalize())[..16]))
    }

    /// An id as read from a record; only its shape is checked.
    pub fn parse(s: &str) -> Option<KeyId> {
        let ok = s.len() == 17
            && s.starts_with('k')
            && s[1..]
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
        ok.then(|| KeyId(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One key-encryption key. Its `Debug` shows the id only.
pub struct Kek {
    id: KeyId,
    key: LessSafeKey,
}

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Kek({})", self.id)
    }
}

impl Kek {
    fn from_bytes(bytes: &[u8; KEY_LEN]) -> Kek {
        let unbound = UnboundKey::new(&AES_256_GCM, bytes).expect("32 bytes is an AES-256 key");
        Kek {
            id: KeyId::of(bytes),
            key: LessSafeKey::new(unbound),
        }
    }

    pub fn id(&self) -> &KeyId {
        &self.id
    }

    /// AES-256-GCM under this key with a fresh random nonce:
    /// `nonce ‖ ciphertext ‖ tag`.
    pub(crate) fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        fill_random(&mut nonce)?;
        let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + 16);
        out.extend_from_slice(&nonce);
        let mut body = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut body,
            )
            .map_err(|_| Error::Internal("AES-GCM sealing failed".into()))?;
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// The plaintext of what [`Kek::seal`] produced with the same `aad`, or
    /// `None` when the key, the data or the `aad` differ.
    pub(crate) fn open(&self, aad: &[u8], sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        if sealed.len() < NONCE_LEN + 16 {
            return None;
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buf = Zeroizing::new(body.to_vec());
        let n = self
            .key
            .open_in_place(nonce, Aad::from(aad), &mut buf[..])
            .ok()?
            .len();
        buf.truncate(n);
        Some(buf)
    }
}

/// Random bytes from the operating system.
pub(crate) fn fill_random(buf: &mut [u8]) -> Result<()> {
    SystemRandom::new()
        .fill(buf)
        .map_err(|_| Error::Unavailable("the system random number generator failed".into()))
}

/// Where a keyring's keys come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeySource {
    /// A key file (reread when a key is missing and every
    /// [`RELOAD_INTERVAL`]).
    File(PathBuf),
    /// `TRACSEQ_KEK`, read once.
    Env,
}

impl fmt::Display for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::File(p) => write!(f, "key file {}", p.display()),
            KeySource::Env => write!(f, "{KEK_ENV} variable"),
        }
    }
}

/// A new random key, written as a key-file line with its id as a comment.
pub fn generate_key_line() -> Result<(KeyId, Zeroizing<String>)> {
    let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
    fill_random(&mut bytes[..])?;
    let id = KeyId::of(&bytes);
    let line = Zeroizing::new(format!("{}  # {id}", hex::encode(&bytes[..])));
    Ok((id, line))
}

/// The text of a key file: a header, then one key per line (the first
/// wraps new objects).
pub fn key_file_text(lines: &[&str]) -> Zeroizing<String> {
    let mut text = Zeroizing::new(String::from(
        "# tracseq-ml key-encryption keys (AES-256), one per line.\n\
         # The first wraps the data keys of new artifacts; keep the others until\n\
         # `tracseq-ml keys status` shows no artifact under their id.\n",
    ));
    for l in lines {
        text.push_str(l);
        text.push('\n');
    }
    text
}

/// The keys in a key file's (or `TRACSEQ_KEK`'s) text, in order: blank
/// lines and `#` comments are skipped, entries may also be comma-separated.
/// `source` names the text in errors, which never quote it.
pub fn parse_keys(text: &str, source: &KeySource) -> Result<Vec<Arc<Kek>>> {
    let mut keys: Vec<Arc<Kek>> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("");
        for entry in line.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
            if entry.len() != 2 * KEY_LEN || hex::decode_to_slice(entry, &mut bytes[..]).is_err() {
                return Err(Error::Invalid(format!(
                    "{source}, line {}: a key must be 64 hex digits (`tracseq-ml keys generate` writes one)",
                    n + 1
                )));
            }
            let kek = Kek::from_bytes(&bytes);
            if !keys.iter().any(|k| k.id == kek.id) {
                keys.push(Arc::new(kek));
            }
        }
    }
    if keys.is_empty() {
        return Err(Error::Invalid(format!("{source} holds no key")));
    }
    Ok(keys)
}

/// Writes a key file atomically (a temporary file, synced, then renamed)
/// with mode 0600, creating its directory with mode 0700.
pub fn write_key_file(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    let fail = |what: &str, e: std::io::Error| {
        Error::Unavailable(format!("cannot {what} key file {}: {e}", path.display()))
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            let mut b = std::fs::DirBuilder::new();
            b.recursive(true);
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
            b.create(dir)
                .map_err(|e| fail("create the directory of", e))?;
        }
    }
    let mut suffix = [0u8; 6];
    fill_random(&mut suffix)?;
    let tmp = path.with_extension(format!("tmp-{}", hex::encode(suffix)));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let written = opts.open(&tmp).and_then(|mut f| {
        f.write_all(text.as_bytes())?;
        f.sync_all()
    });
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(fail("write", e));
    }
    Ok(())
}

/// Reads a key file; warns when others than its owner may read it.
fn read_key_file(path: &Path) -> Result<Zeroizing<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::Invalid(format!(
            "cannot read key file {}: {e} (`tracseq-ml keys generate --out {}` writes one)",
            path.display(),
            path.display()
        ))
    })?;
    #[cfg(unix)]
    if let Ok(meta) = std::fs::metadata(path) {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(
                file = %path.display(),
                "the key file is readable by other users than its owner: chmod 600 it"
            );
        }
    }
    Ok(Zeroizing::new(text))
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The keys a process holds: the first wraps, all of them open.
pub struct Keyring {
    source: KeySource,
    keys: RwLock<Arc<Vec<Arc<Kek>>>>,
    /// When the key file was last looked at, and its modification time then.
    checked: Mutex<(Instant, Option<SystemTime>)>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("source", &self.source)
            .field("ids", &self.ids())
            .finish()
    }
}

impl Keyring {
    /// The keys of a key file.
    pub fn from_file(path: &Path) -> Result<Keyring> {
        let source = KeySource::File(path.to_path_buf());
        let stamp = modified(path);
        let keys = parse_keys(&read_key_file(path)?, &source)?;
        Ok(Keyring {
            source,
            keys: RwLock::new(Arc::new(keys)),
            checked: Mutex::new((Instant::now(), stamp)),
        })
    }

    /// The keys of a text such as `TRACSEQ_KEK`'s value.
    pub fn from_text(text: &str) -> Result<Keyring> {
        let keys = parse_keys(text, &KeySource::Env)?;
        Ok(Keyring {
            source: KeySource::Env,
            keys: RwLock::new(Arc::new(keys)),
            checked: Mutex::new((Instant::now(), None)),
        })
    }

    pub fn source(&self) -> &KeySource {
        &self.source
    }

    fn current(&self) -> Arc<Vec<Arc<Kek>>> {
        self.keys.read().expect("keyring lock").clone()
    }

    /// Rereads a key file whose modification time changed (or, with
    /// `force`, in any case), at most once per second.
    fn refresh(&self, force: bool) {
        let KeySource::File(path) = &self.source else {
            return;
        };
        let mut checked = self.checked.lock().expect("keyring lock");
        let due = if force {
            checked.0.elapsed() >= Duration::from_secs(1)
        } else {
            checked.0.elapsed() >= RELOAD_INTERVAL
        };
        if !due {
            return;
        }
        let stamp = modified(path);
        *checked = (Instant::now(), stamp);
        match read_key_file(path).and_then(|t| parse_keys(&t, &self.source)) {
            Ok(keys) => {
                let ids: Vec<String> = keys.iter().map(|k| k.id.to_string()).collect();
                let old = self.current();
                if old.len() != keys.len() || old.iter().zip(&keys).any(|(a, b)| a.id != b.id) {
                    tracing::info!(keys = %ids.join(","), "reloaded the key file");
                }
                *self.keys.write().expect("keyring lock") = Arc::new(keys);
            }
            // Keep the keys held: a key file half-edited by an operator
            // must not stop a running platform.
            Err(e) => {
                tracing::warn!(error = %e, "could not reload the key file; keeping the keys held")
            }
        }
    }

    /// The key that wraps new data keys.
    pub fn active(&self) -> Arc<Kek> {
        self.refresh(false);
        self.current()[0].clone()
    }

    /// The key with this id, rereading a key file once when it is missing.
    pub fn find(&self, id: &KeyId) -> Option<Arc<Kek>> {
        let hit = |keys: &[Arc<Kek>]| keys.iter().find(|k| &k.id == id).cloned();
        hit(&self.current()).or_else(|| {
            self.refresh(true);
            hit(&self.current())
        })
    }

    /// The ids held, the active one first.
    pub fn ids(&self) -> Vec<KeyId> {
        self.current().iter().map(|k| k.id.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_line() -> String {
        generate_key_line().unwrap().1.to_string()
    }

    #[test]
    fn a_generated_key_parses_back_with_its_id() {
        let (id, line) = generate_key_line().unwrap();
        let keys = parse_keys(&line, &KeySource::Env).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].id(), &id);
        assert!(KeyId::parse(id.as_str()).is_some());
    }

    #[test]
    fn a_bad_key_is_refused_by_line_without_quoting_it() {
        let good = key_line();
        let secretish = "ab".repeat(31) + "zz";
        let err = parse_keys(&format!("{good}\n{secretish}\n"), &KeySource::Env).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("line 2"), "{msg}");
        assert!(!msg.contains(&secretish), "{msg}");
        assert!(parse_keys("# only a comment\n", &KeySource::Env).is_err());
    }

    #[test]
    fn the_first_key_wraps_and_every_key_opens() {
        let (a, b) = (key_line(), key_line());
        let ring = Keyring::from_text(&format!("{a}\n{b}")).unwrap();
        let ids = ring.ids();
        assert_eq!(ring.active().id(), &ids[0]);
        let sealed = ring.find(&ids[1]).unwrap().seal(b"aad", b"secret").unwrap();
        let other = ring.find(&ids[1]).unwrap();
        assert_eq!(&other.open(b"aad", &sealed).unwrap()[..], b"secret");
        assert!(other.open(b"other aad", &sealed).is_none());
        assert!(ring.active().open(b"aad", &sealed).is_none());
        // TRACSEQ_KEK style: bare keys, comma-separated.
        let bare = |l: &str| l.split_whitespace().next().unwrap().to_string();
        let env = Keyring::from_text(&format!("{}, {}", bare(&a), bare(&b))).unwrap();
        assert_eq!(env.ids(), ids);
    }

    #[test]
    fn a_key_file_is_private_and_a_key_added_to_it_is_found_without_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/kek");
        let first = key_line();
        write_key_file(&path, &key_file_text(&[&first])).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let ring = Keyring::from_file(&path).unwrap();
        let (new_id, new_line) = generate_key_line().unwrap();
        write_key_file(&path, &key_file_text(&[&new_line, &first])).unwrap();
        std::thread::sleep(Duration::from_millis(1100));
        assert!(
            ring.find(&new_id).is_some(),
            "a missing id rereads the file"
        );
        assert_eq!(ring.ids()[0], new_id);
    }

    #[test]
    fn debug_output_shows_ids_not_keys() {
        let line = key_line();
        let ring = Keyring::from_text(&line).unwrap();
        let shown = format!("{ring:?} {:?}", ring.active());
        let hex_key = line.split_whitespace().next().unwrap();
        assert!(!shown.contains(hex_key), "{shown}");
        assert!(shown.contains(ring.ids()[0].as_str()));
    }
}
