//! Where state and locks live by default: absolute paths that do not depend on the working directory.
//!
//! | who  | state directory                                            | instance locks                                         |
//! |------|------------------------------------------------------------|--------------------------------------------------------|
//! | root | `/var/lib/autoscaler`                                      | `/run/lock/autoscaler/<instance>.lock`                 |
//! | user | `$XDG_STATE_HOME/autoscaler` or `~/.local/state/autoscaler` | `$XDG_RUNTIME_DIR/autoscaler/` or `/tmp/autoscaler-<uid>/` |

use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::StateError;

/// Root's state directory, and the fallback when a user's home cannot be found.
pub const SYSTEM_STATE_DIR: &str = "/var/lib/autoscaler";
/// Root's lock directory.
pub const SYSTEM_LOCK_DIR: &str = "/run/lock/autoscaler";

/// The default state directory of this process (see the module table); always absolute.
pub fn default_state_dir() -> PathBuf {
    let uid = nix::unistd::geteuid();
    let home = std::env::var_os("HOME").or_else(|| {
        nix::unistd::User::from_uid(uid)
            .ok()
            .flatten()
            .map(|u| u.dir.into_os_string())
    });
    state_dir_for(uid.is_root(), std::env::var_os("XDG_STATE_HOME"), home)
}

/// The default directory of per-instance lock files of this process; always absolute.
pub fn default_lock_dir() -> PathBuf {
    let uid = nix::unistd::geteuid();
    lock_dir_for(
        uid.is_root(),
        std::env::var_os("XDG_RUNTIME_DIR"),
        uid.as_raw(),
    )
}

/// The state directory for a user: root gets the system directory; others the XDG state
/// home (when set and absolute, as the XDG spec requires), else `~/.local/state`.
pub fn state_dir_for(
    root: bool,
    xdg_state_home: Option<OsString>,
    home: Option<OsString>,
) -> PathBuf {
    let absolute = |v: Option<OsString>| v.map(PathBuf::from).filter(|p| p.is_absolute());
    if root {
        return PathBuf::from(SYSTEM_STATE_DIR);
    }
    if let Some(xdg) = absolute(xdg_state_home) {
        return xdg.join("autoscaler");
    }
    match absolute(home) {
        Some(home) => home.join(".local/state/autoscaler"),
        // No home at all: the system directory, whose permission error names the path.
        None => PathBuf::from(SYSTEM_STATE_DIR),
    }
}

/// The lock directory for a user: root's is shared by every root operator of the host;
/// a user's lives in their runtime directory, else in a private directory under `/tmp`.
pub fn lock_dir_for(root: bool, xdg_runtime_dir: Option<OsString>, uid: u32) -> PathBuf {
    if root {
        return PathBuf::from(SYSTEM_LOCK_DIR);
    }
    match xdg_runtime_dir
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
    {
        Some(dir) => dir.join("autoscaler"),
        None => PathBuf::from(format!("/tmp/autoscaler-{uid}")),
    }
}

/// Creates `dir` (mode 0700, 0755 for root) if missing, then checks that it is a real
/// directory (not a symlink), owned by this user and writable by nobody else: a lock
/// directory under `/tmp` could otherwise be planted by another user.
pub fn ensure_private_dir(dir: &Path) -> Result<(), StateError> {
    let uid = nix::unistd::geteuid();
    let mode = if uid.is_root() { 0o755 } else { 0o700 };
    match fs::DirBuilder::new().mode(mode).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(source) => {
            return Err(StateError::CreateDir {
                path: dir.to_owned(),
                source,
            });
        }
    }
    let unsafe_dir = |reason: String| StateError::UnsafeLockDir {
        path: dir.to_owned(),
        reason,
    };
    let meta = fs::symlink_metadata(dir).map_err(|source| StateError::Read {
        path: dir.to_owned(),
        source,
    })?;
    if !meta.file_type().is_dir() {
        return Err(unsafe_dir("it is not a directory (a symlink?)".to_owned()));
    }
    if meta.uid() != uid.as_raw() {
        return Err(unsafe_dir(format!(
            "it is owned by uid {}, not by this user (uid {uid})",
            meta.uid()
        )));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(unsafe_dir(format!(
            "others may write to it (mode {:o})",
            meta.mode() & 0o7777
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_state_dir_is_absolute_for_every_kind_of_user() {
        let os = |s: &str| Some(OsString::from(s));
        let cases: &[(bool, Option<OsString>, Option<OsString>, &str)] = &[
            (true, os("/x/state"), os("/root"), "/var/lib/autoscaler"),
            (false, os("/x/state"), os("/home/a"), "/x/state/autoscaler"),
            (
                false,
                None,
                os("/home/a"),
                "/home/a/.local/state/autoscaler",
            ),
            // A relative XDG value is invalid by the spec: ignored.
            (
                false,
                os("rel"),
                os("/home/a"),
                "/home/a/.local/state/autoscaler",
            ),
            (false, None, None, "/var/lib/autoscaler"),
            (false, None, os("relative-home"), "/var/lib/autoscaler"),
        ];
        for (root, xdg, home, want) in cases {
            let got = state_dir_for(*root, xdg.clone(), home.clone());
            assert_eq!(got, PathBuf::from(want), "{root} {xdg:?} {home:?}");
            assert!(got.is_absolute());
        }
    }

    #[test]
    fn default_lock_dir_is_per_user_and_absolute() {
        let os = |s: &str| Some(OsString::from(s));
        let cases: &[(bool, Option<OsString>, &str)] = &[
            (true, os("/run/user/0"), "/run/lock/autoscaler"),
            (false, os("/run/user/1000"), "/run/user/1000/autoscaler"),
            (false, None, "/tmp/autoscaler-1000"),
            (false, os("rel"), "/tmp/autoscaler-1000"),
        ];
        for (root, xdg, want) in cases {
            assert_eq!(lock_dir_for(*root, xdg.clone(), 1000), PathBuf::from(want));
        }
    }

    #[test]
    fn lock_dir_that_is_a_symlink_or_open_to_others_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let fresh = tmp.path().join("fresh");
        ensure_private_dir(&fresh).unwrap();
        ensure_private_dir(&fresh).unwrap();
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&fresh, &link).unwrap();
        let err = ensure_private_dir(&link).unwrap_err().to_string();
        assert!(err.contains("not a directory"), "{err}");
        let open = tmp.path().join("open");
        fs::create_dir(&open).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
        let err = ensure_private_dir(&open).unwrap_err().to_string();
        assert!(err.contains("others may write"), "{err}");
    }
}
