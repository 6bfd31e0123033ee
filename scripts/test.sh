#!/usr/bin/env bash
# The whole test suite: formatting, lints, the Rust tests with and without
# statistics. Run from anywhere; it works in the repository it lives in.
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

step "example programs"
cargo run --quiet --example two_level
cargo run --quiet --example two_level -- "${TMPDIR:-/tmp}"

step "cargo doc"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps
