//! Makes this package's own binaries (tests, examples) load libtorch_cuda
//! when LIBTORCH is a CUDA build, so `tch::Cuda::is_available()` can be true.
//!
//! Nothing references libtorch_cuda's symbols directly (CUDA registers itself
//! from the library's static initialisers), so the default `--as-needed`
//! drops it; tch's own build script fixes this the same way, but link
//! arguments never reach dependents. For a CPU-only LIBTORCH (ops/libtorch.sh
//! cpu, whose lib/ has no libtorch_cuda.so) nothing is added, since the
//! wheel's libtorch.so would pull in the CUDA libraries. A binary in another
//! package that trains on CUDA needs the same three link arguments.

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
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }
}
