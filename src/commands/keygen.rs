//! `keygen`: writes an RSA key pair for the RSA flow, the private key readable by its
//! owner only.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Args;

use crate::crypto::{CryptoError, generate_key_pair};
use crate::exit::ExitCode;

pub const PRIVATE_FILE: &str = "private.pem";
pub const PUBLIC_FILE: &str = "public.pem";

#[derive(Debug, Args)]
#[command(after_help = super::help::after_help(
    &[
        ("a 2048-bit pair for the RSA flow", "keyclaim-harness keygen --out-dir keys"),
    ],
    &[ExitCode::Ok, ExitCode::Failed, ExitCode::Usage]
))]
pub struct KeygenArgs {
    /// Folder for private.pem (PKCS#8, mode 0600) and public.pem (SPKI).
    #[arg(long, value_name = "DIR")]
    pub out_dir: PathBuf,
    /// RSA modulus size.
    #[arg(long, default_value_t = 2048, value_parser = parse_rsa_bits)]
    pub bits: usize,
    /// Overwrite existing key files.
    #[arg(long)]
    pub force: bool,
}

fn parse_rsa_bits(value: &str) -> Result<usize, String> {
    match value.parse::<usize>() {
        Ok(bits @ (2048 | 3072 | 4096 | 8192)) => Ok(bits),
        _ => Err(format!(
            "{value} is not a supported size; use 2048, 3072, 4096 or 8192"
        )),
    }
}

pub fn execute(args: KeygenArgs) -> ExitCode {
    match write_key_pair(&args.out_dir, args.bits, args.force) {
        Ok(files) => {
            println!(
                "private key: {} (mode 0600; keep it secret)",
                files.private.display()
            );
            println!("public key:  {}", files.public.display());
            ExitCode::Ok
        }
        Err(err @ KeygenError::Exists(_)) => {
            eprintln!("error: {err}");
            ExitCode::Usage
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::Failed
        }
    }
}

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
