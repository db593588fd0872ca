//! `export_path`: the certificate in use, for other daemons on the host (Dovecot, nginx), as
//! `DIR/<name>/fullchain.pem` and `DIR/<name>/privkey.pem`.
//!
//! `DIR/<name>` is a symbolic link to a versioned directory `DIR/.<name>.<serial>` that is
//! complete (both files written and synced) before the link is swapped by a rename, so the
//! pair a reader finds through the link always belongs together. The previous version is kept
//! for readers still holding it; older ones are removed.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use madmail_config::{Error, Node};
use madmail_module::decode::single;

use crate::storage::safe_name;

/// The `export_*` directives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportConfig {
    pub dir: PathBuf,
    /// `export_owner`: uid of the files.
    pub owner: Option<u32>,
    /// `export_group`: gid of the files; the key is then readable by the group (0640).
    pub group: Option<u32>,
}

/// The files of one certificate under the export directory.
pub fn paths(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let link = dir.join(safe_name(name));
    (link.join("fullchain.pem"), link.join("privkey.pem"))
}

/// Exports a certificate (`name` is its first name) unless this serial is exported already.
pub fn export(
    cfg: &ExportConfig,
    name: &str,
    serial: &str,
    chain_pem: &[u8],
    key_pem: &[u8],
) -> Result<bool, String> {
    let safe = safe_name(name);
    let link = cfg.dir.join(&safe);
    let version_name = format!(".{safe}.{}", safe_name(serial));
    let version = cfg.dir.join(&version_name);
    if fs::read_link(&link).is_ok_and(|target| target == Path::new(&version_name))
        && version.join("fullchain.pem").is_file()
        && version.join("privkey.pem").is_file()
    {
        return Ok(false);
    }
    if let Ok(meta) = fs::symlink_metadata(&link)
        && !meta.file_type().is_symlink()
    {
        return Err(format!(
            "{} exists and is not a symbolic link made by madmail; move it away",
            link.display()
        ));
    }
    let err = |path: &Path| {
        let path = path.display().to_string();
        move |e: std::io::Error| format!("{path}: {e}")
    };
    fs::create_dir_all(&cfg.dir).map_err(err(&cfg.dir))?;
    // A half-written version from an interrupted export is replaced.
    if version.exists() {
        fs::remove_dir_all(&version).map_err(err(&version))?;
    }
    let dir_mode = if cfg.group.is_some() { 0o750 } else { 0o755 };
    fs::create_dir(&version).map_err(err(&version))?;
    fs::set_permissions(&version, fs::Permissions::from_mode(dir_mode)).map_err(err(&version))?;
    let key_mode = if cfg.group.is_some() { 0o640 } else { 0o600 };
    write_synced(&version.join("fullchain.pem"), chain_pem, 0o644)?;
    write_synced(&version.join("privkey.pem"), key_pem, key_mode)?;
    if cfg.owner.is_some() || cfg.group.is_some() {
        for path in [
            version.clone(),
            version.join("fullchain.pem"),
            version.join("privkey.pem"),
        ] {
            std::os::unix::fs::chown(&path, cfg.owner, cfg.group).map_err(err(&path))?;
        }
    }
    fs::File::open(&version)
        .and_then(|d| d.sync_all())
        .map_err(err(&version))?;

    let previous = fs::read_link(&link).ok();
    let tmp_link = cfg.dir.join(format!(".{safe}.link-{}", std::process::id()));
    let _ = fs::remove_file(&tmp_link);
    std::os::unix::fs::symlink(&version_name, &tmp_link).map_err(err(&tmp_link))?;
    fs::rename(&tmp_link, &link).map_err(|e| {
        let _ = fs::remove_file(&tmp_link);
        format!("{}: {e}", link.display())
    })?;
    fs::File::open(&cfg.dir)
        .and_then(|d| d.sync_all())
        .map_err(err(&cfg.dir))?;

    // Keep the new and the previous version; older ones go.
    let prefix = format!(".{safe}.");
    if let Ok(entries) = fs::read_dir(&cfg.dir) {
        for entry in entries.flatten() {
            let file_name = entry.file_name();
            let file_name = file_name.to_string_lossy();
            let keep = file_name == version_name
                || previous.as_deref() == Some(Path::new(file_name.as_ref()));
            if file_name.starts_with(&prefix) && !file_name.contains(".link-") && !keep {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
    }
    Ok(true)
}

fn write_synced(path: &Path, data: &[u8], mode: u32) -> Result<(), String> {
    let err = |e: std::io::Error| format!("{}: {e}", path.display());
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(err)?;
    file.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(err)?;
    file.write_all(data).map_err(err)?;
    file.sync_all().map_err(err)
}

/// `export_owner USER` / `export_group GROUP`: a name from `/etc/passwd` / `/etc/group`, or a
/// number. (Read directly rather than through the C library's getpwnam, which would need
/// unsafe FFI; users only known to NSS modules such as LDAP are given as numbers.)
pub fn id_directive(node: &Node, database: &Path) -> Result<u32, Error> {
    let value = single(node)?;
    if let Ok(id) = value.parse::<u32>() {
        return Ok(id);
    }
    let text = fs::read_to_string(database).map_err(|e| {
        Error::at(
            node.arg_pos(0),
            format!("{}: reading {}: {e}", node.name, database.display()),
        )
    })?;
    lookup_id(&text, value).ok_or_else(|| {
        Error::at(
            node.arg_pos(0),
            format!(
                "{}: no {value:?} in {}; give a number instead",
                node.name,
                database.display()
            ),
        )
    })
}

/// The id (third field) of `name` in a passwd- or group-format file.
fn lookup_id(text: &str, name: &str) -> Option<u32> {
    text.lines().find_map(|line| {
        let mut fields = line.split(':');
        (fields.next()? == name).then_some(())?;
        fields.nth(1)?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_from_passwd_format() {
        let text = "root:x:0:0:root:/root:/bin/bash\ndovecot:x:105:112:Dovecot:/usr/lib/dovecot:/usr/sbin/nologin\n";
        assert_eq!(lookup_id(text, "dovecot"), Some(105));
        assert_eq!(lookup_id(text, "root"), Some(0));
        assert_eq!(lookup_id(text, "nobody"), None);
    }

    #[test]
    fn versions_swap_atomically_and_old_ones_go() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = ExportConfig {
            dir: dir.path().join("export"),
            owner: None,
            group: None,
        };
        let (chain, key) = paths(&cfg.dir, "*.example.org");
        assert_eq!(chain, cfg.dir.join("wildcard_.example.org/fullchain.pem"));
        assert!(export(&cfg, "*.example.org", "01", b"chain1", b"key1").unwrap());
        assert!(!export(&cfg, "*.example.org", "01", b"chain1", b"key1").unwrap());
        assert_eq!(fs::read(&chain).unwrap(), b"chain1");
        assert_eq!(fs::read(&key).unwrap(), b"key1");
        let mode = fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(export(&cfg, "*.example.org", "02", b"chain2", b"key2").unwrap());
        assert!(export(&cfg, "*.example.org", "03", b"chain3", b"key3").unwrap());
        assert_eq!(fs::read(&chain).unwrap(), b"chain3");
        assert_eq!(fs::read(&key).unwrap(), b"key3");
        let mut names: Vec<String> = fs::read_dir(&cfg.dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                ".wildcard_.example.org.02",
                ".wildcard_.example.org.03",
                "wildcard_.example.org"
            ]
        );
        // A directory someone else made is not replaced.
        fs::create_dir_all(cfg.dir.join("mail.example.org")).unwrap();
        let error = export(&cfg, "mail.example.org", "01", b"c", b"k").unwrap_err();
        assert!(error.contains("is not a symbolic link"), "{error}");
    }
}
