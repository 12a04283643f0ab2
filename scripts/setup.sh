#!/usr/bin/env bash
# Set up localsym on this machine: a virtual environment in .venv with llama-cpp-python built
# portably, the project (editable, with its dev tools), and the embedded default model.
#
# Idempotent and fast when nothing changed: the llama-cpp-python wheel is built once per
# (version, CMake flags, Python) into a wheelhouse under the user cache, and the whole set-up is
# skipped when a stamp of its inputs matches.
#
# Environment:
#   LOCALSYM_VENV        where the virtual environment goes (default: .venv in the repository)
#   PYTHON               the interpreter to create it with (default: python3; 3.10 to 3.13)
#   LOCALSYM_CMAKE_ARGS  CMake flags for llama.cpp. Default: a portable CPU build (the native
#                        build, -march=native, crashes in the AMX kernels of some Xeons).
#                        For an NVIDIA GPU: LOCALSYM_CMAKE_ARGS="-DGGML_CUDA=on"
#   LOCALSYM_WHEELHOUSE  where built llama-cpp-python wheels (and llama-server) are kept
#   LOCALSYM_SERVER      0: do not build llama-server (the endpoint tests then skip it)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${LOCALSYM_VENV:-$root/.venv}"
python="${PYTHON:-python3}"
cmake_args="${LOCALSYM_CMAKE_ARGS:--DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON}"
wheelhouse_root="${LOCALSYM_WHEELHOUSE:-${XDG_CACHE_HOME:-$HOME/.cache}/localsym/wheels}"
say() { printf 'setup: %s\n' "$*" >&2; }

"$python" - <<'EOF' || { say "Python 3.10 to 3.13 is needed (found $("$python" --version 2>&1)); set PYTHON=..."; exit 1; }
import sys; sys.exit(0 if (3, 10) <= sys.version_info[:2] < (3, 14) else 1)
EOF

# Everything that shapes the environment; when its hash is unchanged there is nothing to do.
stamp_inputs="$(cat "$root/pyproject.toml" "$root/scripts/setup.sh" "$root/models/registry.toml"; echo "$cmake_args"; "$python" --version)"
stamp="$(printf '%s' "$stamp_inputs" | sha256sum | cut -c1-32)"
stamp_file="$venv/.localsym-setup"
if [[ -f "$stamp_file" && "$(cat "$stamp_file")" == "$stamp" ]] \
   && "$venv/bin/python" -c "import localsym.lm, llama_cpp" 2>/dev/null \
   && "$venv/bin/localsym" models install >/dev/null 2>&1 \
   && { [[ "${LOCALSYM_SERVER:-1}" == 0 ]] || [[ -x "$venv/bin/llama-server" ]]; }; then
  say "up to date ($venv)"
  exit 0
fi

if [[ ! -x "$venv/bin/python" ]]; then
  say "creating virtual environment $venv"
  "$python" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip --disable-pip-version-check)
"${pip[@]}" install --quiet --upgrade pip

# llama-cpp-python: the pinned version from pyproject.toml, built once per flags into a wheelhouse.
llama_pin="$("$venv/bin/python" - "$root/pyproject.toml" <<'EOF'
import re, sys
text = open(sys.argv[1]).read()
print(re.search(r'"(llama-cpp-python==[^"]+)"', text).group(1))
EOF
)"
pyver="$("$venv/bin/python" -c 'import sys; print("cp%d%d" % sys.version_info[:2])')"
wheelhouse="$wheelhouse_root/$(printf '%s|%s|%s' "$llama_pin" "$cmake_args" "$pyver" | sha256sum | cut -c1-16)"
if ! compgen -G "$wheelhouse/llama_cpp_python-*.whl" >/dev/null; then
  say "building $llama_pin with CMAKE_ARGS='$cmake_args' (a few minutes, once)"
  mkdir -p "$wheelhouse"
  # --no-cache-dir: pip's wheel cache ignores CMAKE_ARGS and would hand back a build with other flags
  CMAKE_ARGS="$cmake_args" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc 2>/dev/null || echo 2)" \
    "${pip[@]}" wheel --quiet --no-cache-dir --no-deps --wheel-dir "$wheelhouse" "$llama_pin"
fi
"${pip[@]}" install --quiet --no-deps --force-reinstall "$wheelhouse"/llama_cpp_python-*.whl

# llama.cpp's own server (llama-server: parallel slots, continuous batching) from the same pinned
# source, which the sdist vendors: built once per (version, flags) beside the wheels, linked into
# the venv; the endpoint tests and scripts/bench_endpoint.py run it. LOCALSYM_SERVER=0 skips it.
server="$wheelhouse_root/server-$(printf '%s|%s' "$llama_pin" "$cmake_args" | sha256sum | cut -c1-16)/llama-server"
if [[ "${LOCALSYM_SERVER:-1}" != 0 && ! -x "$server" ]]; then
  say "building llama-server from $llama_pin (a few minutes, once)"
  # the wheel's build brings its own CMake; this build uses the system's, or pinned wheels of
  # CMake and Ninja in the venv where the machine has none
  cmake_bin="$(command -v cmake || true)"
  generator=()
  if [[ -z "$cmake_bin" ]]; then
    "${pip[@]}" install --quiet "cmake==3.31.6" "ninja==1.13.2"
    cmake_bin="$venv/bin/cmake"
    generator=(-G Ninja "-DCMAKE_MAKE_PROGRAM=$venv/bin/ninja")
  elif ! command -v make >/dev/null; then
    command -v ninja >/dev/null || "${pip[@]}" install --quiet "ninja==1.13.2"
    generator=(-G Ninja "-DCMAKE_MAKE_PROGRAM=$(command -v ninja || echo "$venv/bin/ninja")")
  fi
  src="$(mktemp -d)"
  "${pip[@]}" download --quiet --no-deps --no-binary :all: -d "$src" "$llama_pin"
  tar xzf "$src"/llama_cpp_python-*.tar.gz -C "$src"
  # shellcheck disable=SC2086 # the flags are words
  "$cmake_bin" -S "$(echo "$src"/llama_cpp_python-*/vendor/llama.cpp)" -B "$src/build" \
    "${generator[@]}" $cmake_args \
    -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DLLAMA_CURL=OFF -DLLAMA_BUILD_SERVER=ON \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF >/dev/null
  "$cmake_bin" --build "$src/build" --target llama-server -j "$(nproc 2>/dev/null || echo 2)" >/dev/null
  mkdir -p "$(dirname "$server")"
  cp "$src/build/bin/llama-server" "$server"
  rm -rf "$src"
fi
if [[ -x "$server" ]]; then ln -sf "$server" "$venv/bin/llama-server"; fi

say "installing localsym and its pinned dependencies"
"${pip[@]}" install --quiet --find-links "$wheelhouse" -e "$root[dev]"

say "installing the embedded default model"
"$venv/bin/localsym" models install

"$venv/bin/python" -c "import localsym.lm, llama_cpp" # the environment imports
printf '%s' "$stamp" > "$stamp_file"
say "ready: $venv"
