#!/usr/bin/env bash
# The whole test suite: formatting, lints, the Rust tests with and without
# statistics, then the C library (built with CMake in build/ctest) and its
# tests under ctest. Run from anywhere; it works in the repository it lives
# in. Installs cmake, make, a C compiler, pkg-config, valgrind and clang with
# libFuzzer (with apt-get, as root) and the pinned cbindgen (with cargo) when
# they are missing. Includes the time-boxed fuzz smoke runs and the valgrind
# tests (see RELIABILITY.md). Set DEVICE_DAX_PATH to run the C conformance
# suite on a device DAX too.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, all features)"
cargo clippy --all-targets --all-features -- -D warnings

step "cargo test"
cargo test

step "cargo test --no-default-features (statistics compiled out)"
cargo test --no-default-features

step "fuzz smoke run: random operations against a model, 25 s"
VMEMCACHE_FUZZ_SECONDS=25 cargo test --quiet --test model

step "example programs"
cargo run --quiet --example two_level
cargo run --quiet --example two_level -- "${TMPDIR:-/tmp}"

step "cargo doc"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps

step "C library: build tools"
. scripts/deps.sh
ensure_c_tools
ensure_cbindgen
ensure_checkers

step "C library: configure and build (build/ctest)"
cmake -S . -B build/ctest -DCMAKE_BUILD_TYPE=Release \
	-DDEVICE_DAX_PATH="${DEVICE_DAX_PATH:-}" >/dev/null
cmake --build build/ctest -j "$(nproc)"

step "C library: ctest"
(cd build/ctest && ctest --output-on-failure -j "$(nproc)")
