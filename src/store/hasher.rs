//! Argon2id with a pepper, on a bounded pool of threads of its own: passcodes hashed and
//! verified off the async runtime, so that a login storm cannot stall media or SIP.

use super::StoreError;
use crate::login::Passcode;
use argon2::password_hash::{rand_core::OsRng, PasswordHash, SaltString};
use std::sync::{Arc, Mutex, OnceLock};

/// How passcodes are hashed: argon2id parameters and the pepper.
#[derive(Debug, Clone)]
pub struct HashSettings {
    /// Memory per hash, KiB.
    pub memory_kib: u32,
    /// Passes over the memory.
    pub iterations: u32,
    /// A server-side secret mixed into every new hash (argon2's secret input), kept outside
    /// the database: a stolen database alone cannot be brute-forced. Hashes made with it carry
    /// its id (`keyid`), so hashes made before it (or with none) still verify.
    pub pepper: Option<Vec<u8>>,
}

impl Default for HashSettings {
    fn default() -> Self {
        HashSettings {
            memory_kib: DEFAULT_HASH_MEMORY_KIB,
            iterations: DEFAULT_HASH_ITERATIONS,
            pepper: None,
        }
    }
}

/// Default argon2id memory (KiB) and passes: about 2 ms of one core here, with the pepper
/// doing the work of keeping a stolen database useless (BENCHMARKS.md: "Cost per login").
pub const DEFAULT_HASH_MEMORY_KIB: u32 = 4096;
pub const DEFAULT_HASH_ITERATIONS: u32 = 1;

/// The id of a pepper as stored in hashes: the first 8 bytes of its SHA-256.
fn pepper_id(pepper: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(pepper)[..8].to_vec()
}

/// Argon2id hashing on a fixed pool of threads (one per core), off the async runtime: a
/// login storm cannot stall media, and each thread reuses one block of hash memory instead of
/// allocating (and leaving resident) megabytes per hash.
#[derive(Debug, Clone)]
pub(super) struct Hasher {
    jobs: std::sync::mpsc::Sender<HashJob>,
    keys: Arc<HashKeys>,
    dummy: Arc<OnceLock<String>>,
}

/// What hashes are made with.
#[derive(Debug)]
struct HashKeys {
    params: argon2::Params,
    /// The pepper and its id (the `keyid` of hashes made with it).
    pepper: Option<(Vec<u8>, Vec<u8>)>,
}

enum HashJob {
    Hash(
        Passcode,
        tokio::sync::oneshot::Sender<Result<String, StoreError>>,
    ),
    Verify(Passcode, String, tokio::sync::oneshot::Sender<bool>),
}

impl std::fmt::Debug for HashJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HashJob") // never the passcode
    }
}

impl HashKeys {
    /// A new PHC string for `p`.
    fn hash(&self, p: &Passcode, memory: &mut Vec<argon2::Block>) -> Result<String, StoreError> {
        let bad = |e: String| StoreError::Invalid(format!("cannot hash passcode: {e}"));
        let salt = SaltString::generate(&mut OsRng);
        let mut salt_bytes = [0u8; 64];
        let salt_raw = salt
            .decode_b64(&mut salt_bytes)
            .map_err(|e| bad(e.to_string()))?;
        let mut out = [0u8; 32];
        self.run(
            &self.params,
            argon2::Version::V0x13,
            self.pepper.is_some(),
            p,
            salt_raw,
            &mut out,
            memory,
        )
        .map_err(|e| bad(e.to_string()))?;
        let hash = PasswordHash {
            algorithm: argon2::ARGON2ID_IDENT,
            version: Some(argon2::Version::V0x13.into()),
            params: argon2::password_hash::ParamsString::try_from(&self.params)
                .map_err(|e| bad(e.to_string()))?,
            salt: Some(salt.as_salt()),
            hash: Some(argon2::password_hash::Output::new(&out).map_err(|e| bad(e.to_string()))?),
        };
        Ok(hash.to_string())
    }

    /// Whether `p` matches `phc`: with the pepper when the hash carries its id, without when
    /// it carries none; never when it carries another pepper's.
    fn verify(&self, p: &Passcode, phc: &str, memory: &mut Vec<argon2::Block>) -> bool {
        let Ok(h) = PasswordHash::new(phc) else {
            return false;
        };
        let (Ok(params), Some(salt), Some(expected)) =
            (argon2::Params::try_from(&h), h.salt, h.hash)
        else {
            return false;
        };
        let peppered = !params.keyid().is_empty();
        if peppered
            && self
                .pepper
                .as_ref()
                .is_none_or(|(_, id)| id.as_slice() != params.keyid())
        {
            return false;
        }
        let version = h
            .version
            .and_then(|v| argon2::Version::try_from(v).ok())
            .unwrap_or_default();
        let mut salt_bytes = [0u8; 64];
        let Ok(salt_raw) = salt.decode_b64(&mut salt_bytes) else {
            return false;
        };
        let mut out = vec![0u8; expected.len()];
        if self
            .run(&params, version, peppered, p, salt_raw, &mut out, memory)
            .is_err()
        {
            return false;
        }
        // Constant time.
        out.iter()
            .zip(expected.as_bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }

    #[allow(clippy::too_many_arguments)]
    fn run(
        &self,
        params: &argon2::Params,
        version: argon2::Version,
        peppered: bool,
        p: &Passcode,
        salt: &[u8],
        out: &mut [u8],
        memory: &mut Vec<argon2::Block>,
    ) -> Result<(), argon2::Error> {
        let argon = match (&self.pepper, peppered) {
            (Some((secret, _)), true) => argon2::Argon2::new_with_secret(
                secret,
                argon2::Algorithm::Argon2id,
                version,
                params.clone(),
            )?,
            _ => argon2::Argon2::new(argon2::Algorithm::Argon2id, version, params.clone()),
        };
        // The thread's memory, grown once to the largest hash it has seen.
        if memory.len() < params.block_count() {
            memory.resize(params.block_count(), argon2::Block::default());
        }
        argon.hash_password_into_with_memory(
            p.0.as_bytes(),
            salt,
            out,
            &mut memory[..params.block_count()],
        )
    }
}

impl Hasher {
    pub(super) fn new(settings: &HashSettings) -> Result<Hasher, StoreError> {
        let bad = |e: argon2::Error| StoreError::Invalid(format!("passcode hashing: {e}"));
        let mut builder = argon2::ParamsBuilder::new();
        builder
            .m_cost(settings.memory_kib)
            .t_cost(settings.iterations)
            .p_cost(1);
        let pepper = match &settings.pepper {
            Some(p) => {
                let id = pepper_id(p);
                builder.keyid(argon2::KeyId::new(&id).map_err(bad)?);
                Some((p.clone(), id))
            }
            None => None,
        };
        let keys = Arc::new(HashKeys {
            params: builder.build().map_err(bad)?,
            pepper,
        });
        let (tx, rx) = std::sync::mpsc::channel::<HashJob>();
        let rx = Arc::new(Mutex::new(rx));
        let n = std::thread::available_parallelism().map_or(2, |n| n.get());
        for i in 0..n {
            let (rx, keys) = (rx.clone(), keys.clone());
            std::thread::Builder::new()
                .name(format!("agentgw-hash-{i}"))
                .spawn(move || {
                    let mut memory = Vec::new();
                    loop {
                        // Ends when every Store (every sender) is gone.
                        let job = match rx.lock() {
                            Ok(r) => r.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(HashJob::Hash(p, reply)) => {
                                let _ = reply.send(keys.hash(&p, &mut memory));
                            }
                            Ok(HashJob::Verify(p, phc, reply)) => {
                                let _ = reply.send(keys.verify(&p, &phc, &mut memory));
                            }
                            Err(_) => return,
                        }
                    }
                })
                .map_err(|e| {
                    StoreError::Unavailable(format!("cannot start hashing threads: {e}"))
                })?;
        }
        Ok(Hasher {
            jobs: tx,
            keys,
            dummy: Arc::default(),
        })
    }

    fn submit(&self, job: HashJob) -> Result<(), StoreError> {
        self.jobs.send(job).map_err(|_| closed())
    }

    pub(super) async fn hash(&self, p: &Passcode) -> Result<String, StoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.submit(HashJob::Hash(p.clone(), tx))?;
        rx.await.map_err(|_| closed())?
    }

    /// Verifies `p` against `phc`; with no hash (unknown agent) it verifies against a dummy so
    /// that unknown agents and wrong passcodes take the same time.
    pub(super) async fn verify(
        &self,
        p: &Passcode,
        phc: Option<String>,
    ) -> Result<bool, StoreError> {
        let known = phc.is_some();
        let phc = match phc {
            Some(h) => h,
            None => self.dummy_hash().await?,
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.submit(HashJob::Verify(p.clone(), phc, tx))?;
        let ok = rx.await.map_err(|_| closed())?;
        Ok(known && ok)
    }

    pub(super) async fn dummy_hash(&self) -> Result<String, StoreError> {
        if let Some(h) = self.dummy.get() {
            return Ok(h.clone());
        }
        let h = self.hash(&Passcode("not-a-passcode".into())).await?;
        Ok(self.dummy.get_or_init(|| h).clone())
    }

    /// 48 bytes of key stream for sealing a secret under `salt` with the pepper (with none,
    /// a key anyone can compute: the secret is then only as safe as the database), and the
    /// pepper's id in hex ("" without one).
    pub(super) fn seal_pad(&self, salt: &[u8]) -> ([u8; 48], String) {
        use hmac::{Hmac, Mac};
        let (key, id) = match &self.keys.pepper {
            Some((p, id)) => (p.as_slice(), crate::hex::encode(id)),
            None => (&[][..], String::new()),
        };
        let block = |n: u8| {
            let mut m = Hmac::<sha2::Sha256>::new_from_slice(key).expect("any key length");
            m.update(b"agentgw sealed secret");
            m.update(salt);
            m.update(&[n]);
            m.finalize().into_bytes()
        };
        let mut pad = [0u8; 48];
        pad[..32].copy_from_slice(&block(1));
        pad[32..].copy_from_slice(&block(2)[..16]);
        (pad, id)
    }

    /// The id of the pepper, as `keyid=` shows it in a PHC string.
    pub(super) fn pepper_keyid_b64(&self) -> Option<String> {
        use argon2::password_hash::Encoding;
        let (_, id) = self.keys.pepper.as_ref()?;
        let mut buf = [0u8; 16];
        Encoding::B64.encode(id, &mut buf).ok().map(str::to_string)
    }
}

fn closed() -> StoreError {
    StoreError::Unavailable("the hashing pool is shut down".into())
}
