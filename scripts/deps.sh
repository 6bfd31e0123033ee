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
