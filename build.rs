//! Link settings the `tracseq-ml` binary needs from libraries built by its
//! dependencies:
//!
//! - XGBoost is built from source as a shared library (libxgboost.so) inside
//!   xgboost_lib-sys's build directory. `cargo run` and `cargo test` put that
//!   directory on the library path, but the binary run directly would not
//!   find it, so it gets an rpath to it. (This package depends on
//!   xgboost_lib-sys directly so that its build script has run by now.)
//! - With the `torch` feature and a CUDA libtorch (`LIBTORCH/lib` holds
//!   libtorch_cuda.so, as on GPU hosts), keep libtorch linked although no
//!   symbol of it is referenced directly: CUDA registers itself from the
//!   library's static initialisers, and the default `--as-needed` would drop
//!   it, leaving `tch::Cuda::is_available()` false on a GPU host. Link
//!   arguments of a dependency's build script (ml/build.rs does the same for
//!   that package's own tests) never reach this binary, hence this copy.
//! - With the `torch` feature, an rpath to the directory that really holds
//!   libtorch (LIBTORCH/lib is a tree of links into the PyTorch wheel), so
//!   `target/release/tracseq-ml` runs without LD_LIBRARY_PATH. It must be
//!   the real directory: the wheel's libraries find libc10, libgomp and the
//!   CUDA runtime through their own `$ORIGIN`-relative rpath, and `$ORIGIN`
//!   is the directory the loader opened them from.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-changed=build.rs");
    xgboost_rpath();
    if std::env::var_os("CARGO_FEATURE_TORCH").is_none() {
        return;
    }
    let Some(libtorch) = std::env::var_os("LIBTORCH") else {
        return;
    };
    libtorch_rpath(Path::new(&libtorch));
    if Path::new(&libtorch).join("lib/libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg-bins=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg-bins=-ltorch");
        println!("cargo:rustc-link-arg-bins=-Wl,--as-needed");
    }
}

/// An rpath to the real directory of `libtorch_cpu.so` (following links).
fn libtorch_rpath(libtorch: &Path) {
    let lib = libtorch.join("lib/libtorch_cpu.so");
    match std::fs::canonicalize(&lib) {
        Ok(real) => {
            if let Some(dir) = real.parent() {
                println!("cargo:rustc-link-arg-bins=-Wl,-rpath,{}", dir.display());
            }
        }
        Err(e) => println!(
            "cargo:warning={} not found ({e}); run the binary with libtorch on LD_LIBRARY_PATH",
            lib.display()
        ),
    }
}

/// The most recently built libxgboost.so among xgboost_lib-sys's build
/// directories of this profile (`OUT_DIR` is `<profile>/build/<pkg>/out`).
fn xgboost_rpath() {
    let Some(out_dir) = std::env::var_os("OUT_DIR") else {
        return;
    };
    let Some(build_dir) = Path::new(&out_dir).ancestors().nth(2) else {
        return;
    };
    let Ok(entries) = std::fs::read_dir(build_dir) else {
        return;
    };
    let newest: Option<(SystemTime, PathBuf)> = entries
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("xgboost_lib-sys-")
        })
        .map(|e| e.path().join("out/lib/libxgboost.so"))
        .filter_map(|lib| {
            let modified = lib.metadata().and_then(|m| m.modified()).ok()?;
            Some((modified, lib))
        })
        .max();
    match newest {
        Some((_, lib)) => {
            if let Some(dir) = lib.parent() {
                println!("cargo:rustc-link-arg-bins=-Wl,-rpath,{}", dir.display());
                println!("cargo:rerun-if-changed={}", lib.display());
            }
        }
        None => println!(
            "cargo:warning=libxgboost.so not found under {}; run the binary with it on \
             LD_LIBRARY_PATH",
            build_dir.display()
        ),
    }
}
