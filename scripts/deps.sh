# Sourced by examples.sh and test.sh: makes sure the tools of the C build are
# there, installing them with apt-get where that is possible (as root, or
# with password-less sudo), and otherwise saying exactly what is missing.

# The cbindgen that generated include/libvmemcache.h; another version may
# format the header differently.
CBINDGEN_VERSION=0.29.4

have() { command -v "$1" >/dev/null 2>&1; }

apt_install() {
	local sudo=
	if [ "$(id -u)" != 0 ]; then
		have sudo && sudo -n true 2>/dev/null || return 1
		sudo="sudo -n"
	fi
	have apt-get || return 1
	echo "installing with apt-get: $*"
	$sudo apt-get update -qq &&
		DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq \
			--no-install-recommends "$@" >/dev/null
}

# cmake, make, a C compiler and pkg-config are required; a C++ compiler is
# installed when possible (the header is also tested as C++).
ensure_c_tools() {
	local need=() missing=()
	have cmake || need+=(cmake)
	have make || need+=(make)
	have cc || need+=(gcc)
	have pkg-config || need+=(pkg-config)
	have c++ || need+=(g++)
	if [ ${#need[@]} -gt 0 ]; then
		apt_install "${need[@]}" || true
	fi
	have cmake || missing+=("cmake (3.13 or later)")
	have make || missing+=("make")
	have cc || missing+=("a C compiler as cc (gcc or clang)")
	have pkg-config || missing+=("pkg-config")
	if [ ${#missing[@]} -gt 0 ]; then
		echo "error: the C build needs, and this script could not install (no root, no apt-get):" >&2
		printf '  - %s\n' "${missing[@]}" >&2
		echo "Install them with the system's package manager, then run this again." >&2
		exit 1
	fi
	have c++ || echo "note: no C++ compiler: the header's C++ test will be skipped"
}

# cbindgen, pinned, installed with cargo into ~/.cargo/bin when absent.
ensure_cbindgen() {
	local bin="${CARGO_HOME:-$HOME/.cargo}/bin"
	case ":$PATH:" in *":$bin:"*) ;; *) PATH="$PATH:$bin" ;; esac
	export PATH
	if have cbindgen && [ "$(cbindgen --version)" = "cbindgen $CBINDGEN_VERSION" ]; then
		return
	fi
	echo "installing cbindgen $CBINDGEN_VERSION with cargo (a few minutes)"
	cargo install cbindgen --locked --version "$CBINDGEN_VERSION"
}

# The checkers of the reliability tests: valgrind (memcheck, helgrind, drd)
# and clang with libFuzzer. Optional: the tests that need a missing one are
# skipped and say so.
ensure_checkers() {
	local need=()
	have valgrind || need+=(valgrind)
	if ! clang_has_libfuzzer; then
		need+=(clang)
		# libFuzzer's runtime: its own package on Debian 12 and later.
		if have apt-cache; then
			if apt-cache show libclang-rt-dev >/dev/null 2>&1; then
				need+=(libclang-rt-dev)
			fi
		fi
	fi
	if [ ${#need[@]} -gt 0 ]; then
		apt_install "${need[@]}" || true
	fi
	have valgrind || echo "note: no valgrind: the valgrind tests (ctest -L valgrind) will be skipped"
	clang_has_libfuzzer || echo "note: no clang with libFuzzer: the C fuzz target will be skipped"
}

# Whether clang can link a libFuzzer target.
clang_has_libfuzzer() {
	have clang || return 1
	local dir
	dir=$(mktemp -d) || return 1
	printf '%s\n' '#include <stddef.h>' '#include <stdint.h>' \
		'int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }' \
		> "$dir/probe.c"
	clang -fsanitize=fuzzer "$dir/probe.c" -o "$dir/probe" >/dev/null 2>&1
	local status=$?
	rm -rf "$dir"
	return $status
}
