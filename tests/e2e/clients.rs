//! The third-party tools the contract tests run, installed into `tests/clients/<folder>` by
//! `make test-deps`, and a scratch folder beside them for what the tests generate.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The clients folder `folder`, checked to hold `installed` (a file its setup installs); the
/// test fails saying how to install it otherwise.
pub fn installed(folder: &str, installed: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("clients")
        .join(folder);
    assert!(
        dir.join(installed).exists(),
        "{installed} is not installed: run `bash tests/clients/{folder}/setup.sh`"
    );
    dir
}

/// A folder for generated files inside a clients folder, so that what is generated there
/// finds the folder's `node_modules`; removed when dropped.
pub struct Scratch(PathBuf);

impl Scratch {
    /// A fresh folder in `clients`, of its own even among tests running at once.
    pub fn new(clients: &Path) -> Self {
        static MADE: AtomicUsize = AtomicUsize::new(0);
        let n = MADE.fetch_add(1, Ordering::Relaxed);
        let dir = clients.join(format!("generated/{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    /// The path of `name` in it.
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// Writes `text` to `name` in it; gives its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.0).ok();
    }
}

/// Type-checks `entry` (strict) with the TypeScript installed in `clients`; the compiler's
/// complaints when it does not compile.
pub fn type_check(clients: &Path, entry: &Path) -> Result<(), String> {
    let output = Command::new(clients.join("node_modules/.bin/tsc"))
        .args([
            "--noEmit",
            "--strict",
            "--target",
            "es2022",
            "--lib",
            "es2022,dom",
        ])
        .args(["--module", "nodenext", "--moduleResolution", "nodenext"])
        .arg(entry)
        .output()
        .expect("tsc runs");
    if output.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}
