//! The password hashes maddy's `auth.pass_table` stores, byte for byte:
//!
//! - `bcrypt:` followed by a bcrypt hash (`$2a$10$...`, as Go's `x/crypto/bcrypt` writes it;
//!   `$2b$` and `$2y$` are read too).
//! - `argon2:TIME:MEMORY:THREADS:SALT:HASH`: Argon2id (version 0x13) with TIME passes over
//!   MEMORY KiB in THREADS lanes; SALT and HASH in standard base64 with padding; HASH is 64
//!   bytes. This is maddy's own encoding, not a PHC `$argon2id$...` string.
//!
//! maddy also knows `sha256:SALT:HASH`, but enables it only in its own tests; like maddy,
//! madmail rejects it. Computing and verifying are CPU-bound and blocking: run them on
//! blocking threads.

use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use subtle::ConstantTimeEq;

/// maddy's Argon2 salt and output sizes.
const ARGON2_SALT_LEN: usize = 16;
const ARGON2_OUTPUT_LEN: usize = 64;

/// How to hash a new password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hash {
    /// bcrypt with the given cost (4 to 31).
    Bcrypt { cost: u32 },
    /// Argon2id: passes, memory in KiB, lanes.
    Argon2 { time: u32, memory: u32, threads: u8 },
}

impl Hash {
    /// What maddy's `creds create` and `creds password` use: bcrypt, cost 10.
    pub const DEFAULT: Hash = Hash::Bcrypt { cost: 10 };
    /// What `maddy hash --hash argon2` uses when given no parameters.
    pub const ARGON2_DEFAULT: Hash = Hash::Argon2 {
        time: 2,
        memory: 1024,
        threads: 1,
    };
}

impl Default for Hash {
    fn default() -> Hash {
        Hash::DEFAULT
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashError {
    #[error("stored hash has no algorithm tag (expected bcrypt:... or argon2:...)")]
    NoTag,
    #[error("unsupported hash algorithm {0:?} (madmail reads bcrypt and argon2)")]
    UnknownAlgorithm(String),
    #[error("malformed {algorithm} hash: {reason}")]
    Malformed {
        algorithm: &'static str,
        reason: String,
    },
    #[error("the password is longer than 72 bytes, more than bcrypt can use")]
    PasswordTooLong,
    #[error("invalid hash parameters: {0}")]
    Parameters(String),
    #[error("can't get random bytes for a salt: {0}")]
    Random(String),
}

fn malformed(algorithm: &'static str, reason: impl ToString) -> HashError {
    HashError::Malformed {
        algorithm,
        reason: reason.to_string(),
    }
}

/// Hashes `password` into the string maddy stores (`bcrypt:...` or `argon2:...`). Blocking.
pub fn compute(hash: Hash, password: &str) -> Result<String, HashError> {
    match hash {
        Hash::Bcrypt { cost } => {
            // Go's bcrypt refuses passwords it would truncate; so does madmail.
            let parts =
                bcrypt::non_truncating_hash_with_result(password, cost).map_err(|e| match e {
                    bcrypt::BcryptError::Truncation(_) => HashError::PasswordTooLong,
                    other => HashError::Parameters(other.to_string()),
                })?;
            Ok(format!(
                "bcrypt:{}",
                parts.format_for_version(bcrypt::Version::TwoA)
            ))
        }
        Hash::Argon2 {
            time,
            memory,
            threads,
        } => {
            let mut salt = [0u8; ARGON2_SALT_LEN];
            getrandom::fill(&mut salt).map_err(|e| HashError::Random(e.to_string()))?;
            let key = argon2id(password, &salt, time, memory, threads)
                .map_err(|e| HashError::Parameters(e.to_string()))?;
            Ok(format!(
                "argon2:{time}:{memory}:{threads}:{}:{}",
                STANDARD.encode(salt),
                STANDARD.encode(key)
            ))
        }
    }
}

/// Whether `password` matches `stored` (a value of the table). Blocking.
pub fn verify(stored: &str, password: &str) -> Result<bool, HashError> {
    let (algorithm, rest) = stored.split_once(':').ok_or(HashError::NoTag)?;
    match algorithm {
        // Like Go's CompareHashAndPassword, longer passwords are cut at 72 bytes.
        "bcrypt" => bcrypt::verify(password, rest).map_err(|e| malformed("bcrypt", e)),
        "argon2" => verify_argon2(rest, password),
        other => Err(HashError::UnknownAlgorithm(other.to_owned())),
    }
}

fn verify_argon2(encoded: &str, password: &str) -> Result<bool, HashError> {
    let parts: Vec<&str> = encoded.splitn(5, ':').collect();
    let [time, memory, threads, salt, expected] = parts.as_slice() else {
        return Err(malformed(
            "argon2",
            "expected TIME:MEMORY:THREADS:SALT:HASH",
        ));
    };
    let time: u32 = time
        .parse()
        .map_err(|e| malformed("argon2", format!("time {time:?}: {e}")))?;
    let memory: u32 = memory
        .parse()
        .map_err(|e| malformed("argon2", format!("memory {memory:?}: {e}")))?;
    let threads: u8 = threads
        .parse()
        .map_err(|e| malformed("argon2", format!("threads {threads:?}: {e}")))?;
    let salt = STANDARD
        .decode(salt)
        .map_err(|e| malformed("argon2", format!("salt: {e}")))?;
    let expected = STANDARD
        .decode(expected)
        .map_err(|e| malformed("argon2", format!("hash: {e}")))?;
    let key =
        argon2id(password, &salt, time, memory, threads).map_err(|e| malformed("argon2", e))?;
    // A stored hash of another length never matches, as with Go's ConstantTimeCompare.
    Ok(key.as_slice().ct_eq(&expected).into())
}

/// Argon2id v0x13 with maddy's output length. The `argon2` crate refuses a few inputs Go's
/// accepts (salts under 8 bytes, memory under 8 KiB per lane); maddy never writes those.
fn argon2id(
    password: &str,
    salt: &[u8],
    time: u32,
    memory: u32,
    threads: u8,
) -> Result<[u8; ARGON2_OUTPUT_LEN], argon2::Error> {
    let params = Params::new(memory, time, threads.into(), Some(ARGON2_OUTPUT_LEN))?;
    let mut key = [0u8; ARGON2_OUTPUT_LEN];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params).hash_password_into(
        password.as_bytes(),
        salt,
        &mut key,
    )?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    // From maddy's internal/auth/pass_table/table_test.go (written by Go's x/crypto), all for
    // the password "password".
    const MADDY_BCRYPT: &str =
        "bcrypt:$2y$10$4tEJtJ6dApmhETg8tJ4WHOeMtmYXQwmHDKIyfg09Bw1F/smhLjlaa";
    const MADDY_ARGON2: &str = "argon2:1:8:1:U0FBQUFBTFQ=:KHUshl3DcpHR3AoVd28ZeBGmZ1Fj1gwJgNn98Ia8DAvGHqI0BvFOMJPxtaAfO8F+qomm2O3h0P0yV50QGwXI/Q==";
    const MADDY_SHA256: &str = "sha256:U0FMVA==:8PDRAgaUqaLSk34WpYniXjaBgGM93Lc6iF4pw2slthw=";

    // Computed with the Argon2 reference implementation (argon2-cffi's hash_secret_raw,
    // type ID, 64-byte output) with maddy's parameters: `maddy hash --hash argon2` defaults
    // (2:1024:1, 16-byte salt 00..0f, password "pässwörd"), and two lanes (password "hunter2").
    const REFERENCE_ARGON2: &str = "argon2:2:1024:1:AAECAwQFBgcICQoLDA0ODw==:gS5+gF0Z+GCvwpl4iMlb6H9O67pC/fso7dyqDTKqaFc/VdK4P6SJltol9aDdKieMdiI+3TjiBRYKvxAkFzfb9A==";
    const REFERENCE_ARGON2_LANES: &str = "argon2:3:64:2:bWFkZHktc2FsdC0xNmJ5dA==:1KXTm6LYO4WiYjgWGA5Ng9CrZqMbwHy5M2TkSqoom//WOkOLzCFDTR6qgVFeBTzC+ip9ih94jgWjMha8STPdlg==";
    // Python's bcrypt, $2a$ as Go writes, cost 4.
    const REFERENCE_BCRYPT: &str =
        "bcrypt:$2a$04$md28qXmsZ/CmaoQOqjHFse5UsW8EiTWPbto7YNY1OQZ7RxX03/Tki";

    #[test]
    fn verifies_maddy_hashes() {
        assert_eq!(verify(MADDY_BCRYPT, "password"), Ok(true));
        assert_eq!(verify(MADDY_BCRYPT, "different-password"), Ok(false));
        assert_eq!(verify(MADDY_ARGON2, "password"), Ok(true));
        assert_eq!(verify(MADDY_ARGON2, "different-password"), Ok(false));
        assert_eq!(verify(REFERENCE_ARGON2, "pässwörd"), Ok(true));
        assert_eq!(verify(REFERENCE_ARGON2, "passwörd"), Ok(false));
        assert_eq!(verify(REFERENCE_ARGON2_LANES, "hunter2"), Ok(true));
        assert_eq!(verify(REFERENCE_BCRYPT, "correct horse"), Ok(true));
        assert_eq!(verify(REFERENCE_BCRYPT, "correct horse "), Ok(false));
    }

    #[test]
    fn rejects_what_maddy_rejects() {
        assert_eq!(
            verify(MADDY_SHA256, "password"),
            Err(HashError::UnknownAlgorithm("sha256".into()))
        );
        assert_eq!(verify("$2a$04$abc", "password"), Err(HashError::NoTag));
        for broken in [
            "argon2:1:8:1:U0FBQUFBTFQ=",
            "argon2:x:8:1:U0FBQUFBTFQ=:AAAA",
            "argon2:1:8:256:U0FBQUFBTFQ=:AAAA",
            "argon2:1:8:1:U0FBQUFBTFQ:AAAA",
            "argon2:1:8:1:U0FBQUFBTFQ=:not base64!",
            "argon2:0:8:1:U0FBQUFBTFQ=:AAAA",
            "bcrypt:$2a$04$short",
        ] {
            assert!(
                matches!(verify(broken, "password"), Err(HashError::Malformed { .. })),
                "{broken}"
            );
        }
        // A stored hash of the wrong length never matches.
        let short = MADDY_ARGON2.rsplit_once(':').unwrap().0.to_owned() + ":AAAA";
        assert_eq!(verify(&short, "password"), Ok(false));
    }

    #[test]
    fn computes_what_maddy_reads() {
        let bcrypt = compute(Hash::Bcrypt { cost: 4 }, "secret").unwrap();
        assert!(bcrypt.starts_with("bcrypt:$2a$04$"), "{bcrypt}");
        assert_eq!(bcrypt.len(), "bcrypt:".len() + 60);
        assert_eq!(verify(&bcrypt, "secret"), Ok(true));

        let argon2 = compute(Hash::ARGON2_DEFAULT, "secret").unwrap();
        let fields: Vec<&str> = argon2.split(':').collect();
        assert_eq!(fields[..4], ["argon2", "2", "1024", "1"]);
        assert_eq!(STANDARD.decode(fields[4]).unwrap().len(), 16);
        assert_eq!(STANDARD.decode(fields[5]).unwrap().len(), 64);
        assert_eq!(verify(&argon2, "secret"), Ok(true));
        assert_eq!(verify(&argon2, "Secret"), Ok(false));
        // Fresh salt every time.
        assert_ne!(compute(Hash::ARGON2_DEFAULT, "secret").unwrap(), argon2);

        assert_eq!(
            compute(Hash::Bcrypt { cost: 4 }, &"x".repeat(73)),
            Err(HashError::PasswordTooLong)
        );
        assert!(matches!(
            compute(Hash::Bcrypt { cost: 3 }, "x"),
            Err(HashError::Parameters(_))
        ));
        assert!(matches!(
            compute(
                Hash::Argon2 {
                    time: 0,
                    memory: 1024,
                    threads: 1
                },
                "x"
            ),
            Err(HashError::Parameters(_))
        ));
    }
}
