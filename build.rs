//! With the `torch` feature and a CUDA libtorch (`LIBTORCH/lib` holds
//! libtorch_cuda.so, as on GPU hosts), keep libtorch linked although no
//! symbol of it is referenced directly: CUDA registers itself from the
//! library's static initialisers, and the default `--as-needed` would drop
//! it, leaving `tch::Cuda::is_available()` false on a GPU host. Link
//! arguments of a dependency's build script (ml/build.rs does the same for
//! that package's own tests) never reach this binary, hence this copy.

use std::path::Path;

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_TORCH").is_none() {
        return;
    }
    let Some(libtorch) = std::env::var_os("LIBTORCH") else {
        return;
    };
    if Path::new(&libtorch).join("lib/libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg-bins=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg-bins=-ltorch");
        println!("cargo:rustc-link-arg-bins=-Wl,--as-needed");
    }
}
