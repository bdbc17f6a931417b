#!/usr/bin/env bash
# Fails when building the Python extension alone (what maturin does) would turn on a feature of
# a dependency that `cargo test --workspace` does not, which would compile burn, cubecl and wgpu
# a second time. The fix is an entry in crates/facegate-py/Cargo.toml's unification section.
set -euo pipefail
cd "$(dirname "$0")/../.."
tree() { cargo tree --locked "$@" -f '{p} [{f}]' --prefix none | sed 's/ (\*)//; s/ (proc-macro)//' | sort -u; }
# One after the other (run together, the second waits on cargo's lock and says so).
workspace=$(tree --workspace -e normal,build,dev)
alone=$(tree -p facegate-py -e normal,build)
extra=$(comm -13 <(echo "$workspace") <(echo "$alone"))
if [ -n "$extra" ]; then
  echo "facegate-py alone resolves these dependencies with features the workspace's test build lacks:" >&2
  echo "$extra" >&2
  exit 1
fi
echo "facegate-py's dependency features match the workspace's test build"
