//! `keygen`: writes an RSA key pair for the RSA flow, the private key readable by its
//! owner only.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::crypto::{CryptoError, generate_key_pair};

pub const PRIVATE_FILE: &str = "private.pem";
pub const PUBLIC_FILE: &str = "public.pem";

#[derive(Debug, thiserror::Error)]
pub enum KeygenError {
    #[error("{0}: already exists; pass --force to overwrite it")]
    Exists(PathBuf),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

/// The paths written.
pub struct KeyFiles {
    pub private: PathBuf,
    pub public: PathBuf,
}

pub fn write_key_pair(out_dir: &Path, bits: usize, force: bool) -> Result<KeyFiles, KeygenError> {
    let private = out_dir.join(PRIVATE_FILE);
    let public = out_dir.join(PUBLIC_FILE);
    if !force {
        for path in [&private, &public] {
            if path.exists() {
                return Err(KeygenError::Exists(path.clone()));
            }
        }
    }
    std::fs::create_dir_all(out_dir).map_err(|source| KeygenError::Io {
        path: out_dir.to_owned(),
        source,
    })?;
    let pair = generate_key_pair(bits)?;
    write_file(&private, pair.private_pkcs8_pem.as_bytes(), 0o600)?;
    write_file(&public, pair.public_spki_pem.as_bytes(), 0o644)?;
    Ok(KeyFiles { private, public })
}

fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), KeygenError> {
    let io_err = |source| KeygenError::Io {
        path: path.to_owned(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        // The mode applies at creation, so the private key is never readable by others;
        // set it again for a file that --force overwrites.
        options.mode(mode);
        let mut file = options.open(path).map_err(io_err)?;
        file.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(io_err)?;
        file.write_all(contents).map_err(io_err)
    }
    #[cfg(not(unix))]
    {
        let _ = mode;
        let mut file = options.open(path).map_err(io_err)?;
        file.write_all(contents).map_err(io_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_loadable_pair_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let files = write_key_pair(dir.path(), 2048, false).unwrap();
        let private = std::fs::read_to_string(&files.private).unwrap();
        assert!(private.starts_with("-----BEGIN PRIVATE KEY-----"));
        crate::crypto::RsaPrivateKey::from_pem(&private).unwrap();
        let public = std::fs::read_to_string(&files.public).unwrap();
        assert!(public.starts_with("-----BEGIN PUBLIC KEY-----"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&files.private)
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let err = write_key_pair(dir.path(), 2048, false).err().unwrap();
        assert!(err.to_string().contains("--force"), "{err}");
        write_key_pair(dir.path(), 2048, true).unwrap();
    }
}
