//! Secrets: bearer tokens (random, stored as SHA-256) and exchange credentials (sealed with
//! XChaCha20-Poly1305 under a key from `LITETRADE_SECRET_KEY` or a 0600 key file).

use crate::cache::Secret;
use crate::domain::model::Id;
use crate::error::{Error, Result};
use crate::store::files::{keep_private, write_private_file};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};
use std::path::Path;
use zeroize::Zeroizing;

/// Fills a buffer from the OS random source.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).expect("the OS random source is available");
    b
}

/// A new bearer token: 32 random bytes, hex (64 characters).
pub fn new_token() -> String {
    hex::encode(random_bytes::<32>())
}

/// The stored form of a token.
pub fn hash_token(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Seals and opens credentials.
pub struct Vault {
    cipher: XChaCha20Poly1305,
}

impl Vault {
    /// The key from `env_key` (any string; hashed to 32 bytes) or from `key_file`, which is
    /// created with 32 random bytes (mode 0600) when missing. `sealed` is something the
    /// database already holds sealed, as (user, exchange, nonce, ciphertext): the key must
    /// open it, and a missing key file is then an error rather than a new key. Each error
    /// names what to fix and never shows a key.
    pub fn open(
        env_key: Option<&str>,
        key_file: &Path,
        sealed: Option<(Id, &str, &[u8], &[u8])>,
    ) -> Result<Vault> {
        let from_env = env_key.filter(|k| !k.is_empty());
        let vault = Vault {
            cipher: XChaCha20Poly1305::new(
                Self::key(from_env, key_file, sealed.is_none())?
                    .as_ref()
                    .into(),
            ),
        };
        if let Some((user, exchange, nonce, ct)) = sealed
            && !vault.opens(user, exchange, nonce, ct)
        {
            let (source, hint) = match from_env {
                // the variable wins over the file: the file may be the key that sealed them
                Some(_) if key_file.exists() => (
                    "LITETRADE_SECRET_KEY".to_string(),
                    format!(
                        " (the key file {} is not used while the variable is set: unset it to \
                         use the file)",
                        key_file.display()
                    ),
                ),
                Some(_) => ("LITETRADE_SECRET_KEY".to_string(), String::new()),
                None => (
                    format!("the key file {}", key_file.display()),
                    String::new(),
                ),
            };
            return Err(Error::Invalid(format!(
                "the stored credentials cannot be opened with {source}: start with the key \
                 that sealed them{hint}"
            )));
        }
        Ok(vault)
    }

    fn key(
        env_key: Option<&str>,
        key_file: &Path,
        may_create: bool,
    ) -> Result<Zeroizing<[u8; 32]>> {
        Ok(match env_key {
            Some(k) => Zeroizing::new(Sha256::digest(k.as_bytes()).into()),
            None => {
                if !key_file.exists() && !may_create {
                    return Err(Error::Invalid(format!(
                        "the database holds sealed credentials, and LITETRADE_SECRET_KEY is \
                         not set while the key file {} is missing: set LITETRADE_SECRET_KEY to \
                         the value that sealed them, or restore the key file",
                        key_file.display()
                    )));
                }
                keep_private(key_file, "this key file");
                if !key_file.exists() {
                    write_private_file(key_file, hex::encode(random_bytes::<32>()).as_bytes())
                        .map_err(|e| {
                            Error::Invalid(format!(
                                "cannot create key file {}: {e}",
                                key_file.display()
                            ))
                        })?;
                }
                let text = Zeroizing::new(std::fs::read_to_string(key_file).map_err(|e| {
                    Error::Invalid(format!("cannot read key file {}: {e}", key_file.display()))
                })?);
                let bytes = Zeroizing::new(hex::decode(text.trim()).map_err(|_| {
                    Error::Invalid(format!("key file {} is not hex", key_file.display()))
                })?);
                let arr: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
                    Error::Invalid(format!(
                        "key file {} must hold 32 bytes",
                        key_file.display()
                    ))
                })?;
                Zeroizing::new(arr)
            }
        })
    }

    fn aad(user: Id, exchange: &str) -> Vec<u8> {
        format!("litetrade:{user}:{exchange}").into_bytes()
    }

    /// Encrypts credentials bound to (user, exchange); returns (nonce, ciphertext).
    pub fn seal(&self, user: Id, exchange: &str, s: &Secret) -> (Vec<u8>, Vec<u8>) {
        let nonce = random_bytes::<24>();
        let plain = Zeroizing::new(
            serde_json::to_vec(&(&s.api_key, &s.api_secret)).expect("strings serialize"),
        );
        let aad = Self::aad(user, exchange);
        let ct = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &plain,
                    aad: &aad,
                },
            )
            .expect("encryption of a short message cannot fail");
        (nonce.to_vec(), ct)
    }

    /// Whether this key opens sealed credentials: `false` only when their authentication fails
    /// (another key), not for a row too damaged to try. The plaintext is wiped at once.
    fn opens(&self, user: Id, exchange: &str, nonce: &[u8], ct: &[u8]) -> bool {
        !matches!(
            self.decrypt(user, exchange, nonce, ct),
            Err(Unsealed::OtherKey)
        )
    }

    /// Decrypts what [`Vault::seal`] made for the same (user, exchange).
    pub fn open_sealed(&self, user: Id, exchange: &str, nonce: &[u8], ct: &[u8]) -> Result<Secret> {
        let damaged = || Error::Internal("stored credentials are damaged".into());
        let plain = self
            .decrypt(user, exchange, nonce, ct)
            .map_err(|e| match e {
                Unsealed::Damaged => damaged(),
                Unsealed::OtherKey => {
                    Error::Internal("stored credentials cannot be decrypted with this key".into())
                }
            })?;
        let (api_key, api_secret): (String, String) =
            serde_json::from_slice(&plain).map_err(|_| damaged())?;
        Ok(Secret {
            api_key,
            api_secret,
        })
    }

    /// The plaintext (wiped when dropped) of what [`Vault::seal`] made for (user, exchange).
    fn decrypt(
        &self,
        user: Id,
        exchange: &str,
        nonce: &[u8],
        ct: &[u8],
    ) -> std::result::Result<Zeroizing<Vec<u8>>, Unsealed> {
        if nonce.len() != 24 {
            return Err(Unsealed::Damaged);
        }
        let aad = Self::aad(user, exchange);
        self.cipher
            .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad: &aad })
            .map(Zeroizing::new)
            .map_err(|_| Unsealed::OtherKey)
    }
}

/// Why sealed credentials did not open.
enum Unsealed {
    /// Too short a nonce: the row is damaged, whatever the key.
    Damaged,
    /// Authentication failed: another key sealed them (or the ciphertext was altered).
    OtherKey,
}

/// A key shown without revealing it: never more than a quarter of its characters. A key of 32
/// or more characters shows its first and last 4, one of 16 to 31 its last 4, and a shorter
/// one nothing (`****`).
pub fn mask(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    let n = chars.len();
    let tail: String = chars[n.saturating_sub(4)..].iter().collect();
    match n {
        32.. => format!("{}****{tail}", chars[..4].iter().collect::<String>()),
        16.. => format!("****{tail}"),
        _ => "****".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_binding() {
        let dir = tempfile::tempdir().unwrap();
        let v = Vault::open(None, &dir.path().join("k"), None).unwrap();
        let s = Secret {
            api_key: "AKIA1234567890".into(),
            api_secret: "shh".into(),
        };
        let (n, ct) = v.seal(7, "binance", &s);
        assert!(!ct.windows(3).any(|w| w == b"shh"), "secret in ciphertext");
        assert_eq!(v.open_sealed(7, "binance", &n, &ct).unwrap(), s);
        assert!(
            v.open_sealed(8, "binance", &n, &ct).is_err(),
            "bound to the user"
        );
        // the same key file opens it again, and checks it can
        let k = dir.path().join("k");
        let sealed = Some((7, "binance", n.as_slice(), ct.as_slice()));
        let v2 = Vault::open(None, &k, sealed).unwrap();
        assert_eq!(v2.open_sealed(7, "binance", &n, &ct).unwrap(), s);
        // another key is refused at once, naming its source and not the key
        let other = Vault::open(Some("another-key"), &k, sealed).err().unwrap();
        assert!(
            other.to_string().contains("LITETRADE_SECRET_KEY"),
            "{other}"
        );
        assert!(!other.to_string().contains("another-key"), "{other}");
        // ... and points at the key file the variable overrides, which may be the right key
        assert!(
            other.to_string().contains("unset it to use the file"),
            "{other}"
        );
        let elsewhere = dir.path().join("none");
        let plain = Vault::open(Some("another-key"), &elsewhere, sealed)
            .err()
            .unwrap();
        assert!(!plain.to_string().contains("unset"), "{plain}");
        // a missing key file is not replaced by a new key while something is sealed
        let gone = dir.path().join("gone");
        let missing = Vault::open(None, &gone, sealed).err().unwrap();
        assert!(missing.to_string().contains("missing"), "{missing}");
        assert!(!gone.exists());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("k"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn masks_and_hashes() {
        assert_eq!(mask("short"), "****");
        assert_eq!(
            mask("ABCDEFGHIJKLMNO"),
            "****",
            "15 characters: too short to show any"
        );
        assert_eq!(mask("AKIA123456789012"), "****9012");
        let long = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A";
        assert_eq!(mask(long), "vmPU****Eh8A");
        // never more than a quarter shown, for every length
        for n in 0..80 {
            let key: String = "k".repeat(n);
            let shown = mask(&key).chars().filter(|&c| c == 'k').count();
            assert!(4 * shown <= n, "{n} characters, {shown} shown");
        }
        // characters, not bytes
        assert_eq!(mask(&"é".repeat(16)), "****éééé");
        assert_eq!(hash_token("a"), hash_token("a"));
        assert_ne!(new_token(), new_token());
        assert_eq!(new_token().len(), 64);
    }
}
