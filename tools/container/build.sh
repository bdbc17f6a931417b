#!/usr/bin/env bash
# Build the Containerfile's image offline from a prebuilt binary, then prove it works.
#
#   tools/container/build.sh [BINARY]      # default target/release/facegate; run as root
#
# 1. The runtime base: a bookworm-slim-like root filesystem made by mmdebstrap from Debian's
#    packages (minbase + the Containerfile's RUNTIME_PACKAGES), imported as $BASE; cached in
#    podman's store, rebuilt when its recipe changes or with REBUILD_BASE=1 (security updates).
# 2. The image: `podman build` of the Containerfile, a stripped copy of BINARY replacing the
#    `build` stage (--build-context) and $BASE as RUNTIME: no registry, no cargo.
# 3. The proof, $RUNS times: run it with a mounted config file and env vars, time `podman run`
#    to the first 200 of /health; on the first run also the HEALTHCHECK, the non-root user, the
#    config and env reaching the service, one /v1/verify of data/face-a.png vs face-b.png, and a
#    clean stop on SIGTERM. Prints the image size and the start times; any failure exits non-zero.
#
# Needs: apt-get install podman runc mmdebstrap (proven with podman 4.3.1), python3, root.
# Env: IMAGE, BASE, PORT (host port, 18080), RUNS (3), MIRROR, SECURITY_MIRROR, REBUILD_BASE,
#      PODMAN_RUNTIME, LIMITS (below).
set -euo pipefail
cd "$(dirname "$0")/../.."

BIN=${1:-target/release/facegate}
IMAGE=${IMAGE:-localhost/facegate:dev}
BASE=${BASE:-localhost/facegate-base:bookworm}
PORT=${PORT:-18080}
RUNS=${RUNS:-3}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${SECURITY_MIRROR:-http://deb.debian.org/debian-security}
# Where this was proven (a container, cgroup v1 with a cgroup2 mount holding a controller, no
# CAP_SYS_RESOURCE): crun 1.8 refuses such "hybrid" cgroups and runc accepts them; and the
# container's rlimits cannot be set to podman's defaults there (EPERM), so ask for less.
# On a usual host podman's defaults should do: PODMAN_RUNTIME= LIMITS= tools/container/build.sh
PODMAN_RUNTIME=${PODMAN_RUNTIME-runc}
LIMITS=${LIMITS-"--ulimit nofile=16384:16384 --ulimit nproc=16384:16384"}
PODMAN=(podman ${PODMAN_RUNTIME:+--runtime "$PODMAN_RUNTIME"})
# pm SECONDS ARGS: podman with a time limit. Without systemd (here) podman cannot schedule the
# HEALTHCHECK's timer and says so at each start and stop; that line is dropped (the check is
# run by hand below), any other error shows.
pm() {
  local t=$1
  shift
  timeout "$t" "${PODMAN[@]}" "$@" 2> >(grep -v 'unable to get systemd connection' >&2)
}

fail() { echo "build.sh: FAILED: $*" >&2; exit 1; }
since() { awk "BEGIN { printf \"%.1f\", $(date +%s.%N) - $1 }"; }
[ -x "$BIN" ] || fail "$BIN: no such executable (build it, or pass a binary)"
WORK=$(mktemp -d /tmp/facegate-container.XXXXXX)
CONTAINER=""
cleanup() {
  if [ -n "$CONTAINER" ]; then pm 30 rm -f "$CONTAINER" >/dev/null 2>&1 || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

# 1. The base. A merged /usr by the hook, not the usrmerge package (which pulls in ~55 MB of
# Perl); no docs, man pages or translations, as Debian's -slim images; no apt lists. The packages:
# the Containerfile's list, so the two cannot drift apart.
PACKAGES=$(sed -n 's/^ARG RUNTIME_PACKAGES="\(.*\)"$/\1/p' Containerfile)
[ -n "$PACKAGES" ] || fail "no ARG RUNTIME_PACKAGES in the Containerfile"
# shellcheck disable=SC2016,SC2054 # $1 is the hook's; commas separate mmdebstrap's packages
BASE_ARGS=(--variant=minbase --include="${PACKAGES// /,}"
  --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*'
  --dpkgopt='path-include=/usr/share/doc/*/copyright' --dpkgopt='path-exclude=/usr/share/locale/*'
  --dpkgopt='path-exclude=/usr/share/info/*'
  --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin "$1"/var/log/*'
  bookworm "$WORK/base.tar" "deb $MIRROR bookworm main" "deb $MIRROR bookworm-updates main"
  "deb $SECURITY_MIRROR bookworm-security main")
RECIPE=$(printf '%s\n' "${BASE_ARGS[@]}" | sed "s|$WORK|WORK|" | sha256sum | cut -c1-16)
HAVE=$(pm 30 image inspect --format '{{index .Labels "facegate.base.recipe"}}' "$BASE" 2>/dev/null || true)
if [ "$HAVE" != "$RECIPE" ] || [ -n "${REBUILD_BASE:-}" ]; then
  t0=$(date +%s.%N)
  timeout 1200 mmdebstrap "${BASE_ARGS[@]}" >"$WORK/mmdebstrap.log" 2>&1 ||
    { tail -20 "$WORK/mmdebstrap.log"; fail "mmdebstrap"; }
  s=$(since "$t0")
  pm 300 import --quiet --change "LABEL facegate.base.recipe=$RECIPE" \
    --change "LABEL facegate.base.build_s=$s" \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    "$WORK/base.tar" "$BASE" >/dev/null || fail "podman import"
  rm -f "$WORK/base.tar"
  echo "base: $BASE built in $(since "$t0") s (mmdebstrap $s s, then import)"
else
  echo "base: $BASE cached (built in $(pm 30 image inspect --format '{{index .Labels "facegate.base.build_s"}}' "$BASE") s by mmdebstrap)"
fi

# 2. The image. The `build` stage becomes $WORK/ctx, holding out/facegate as that stage would.
# --format docker: OCI images cannot carry a HEALTHCHECK.
mkdir -p "$WORK/ctx/out"
strip -o "$WORK/ctx/out/facegate" "$BIN" 2>/dev/null || cp "$BIN" "$WORK/ctx/out/facegate"
t0=$(date +%s.%N)
# shellcheck disable=SC2086
pm 600 build --quiet --format docker $LIMITS --build-context build="$WORK/ctx" \
  --build-arg RUNTIME="$BASE" -t "$IMAGE" -f Containerfile . >/dev/null || fail "podman build"
echo "image: $IMAGE built in $(since "$t0") s from $BIN"

# 3. The proof. The config file mounted sets queue_capacity, the environment max_batch; the
# "listening" log line reports both.
printf '[scheduler]\nqueue_capacity = 64\n' >"$WORK/facegate.toml"
chmod 644 "$WORK/facegate.toml"
URL=http://127.0.0.1:$PORT
TIMES=()
for i in $(seq 1 "$RUNS"); do
  CONTAINER=facegate-proof-$$-$i
  t0=$(date +%s.%N)
  rm -f "$WORK/conmon.pid"
  # shellcheck disable=SC2086
  pm 60 run -d --name "$CONTAINER" --conmon-pidfile "$WORK/conmon.pid" $LIMITS \
    -p "127.0.0.1:$PORT:8080" -v "$WORK/facegate.toml:/etc/facegate/facegate.toml:ro" \
    -e FACEGATE_MAX_BATCH=3 -e FACEGATE_LOG=info "$IMAGE" >/dev/null || fail "podman run"
  if ! s=$(python3 tools/container/probe.py wait "$URL/health" "$t0" 120 "$WORK/conmon.pid"); then
    pm 30 logs "$CONTAINER" 2>&1 | tail -20
    fail "no 200 from /health"
  fi
  TIMES+=("$s")
  echo "run $i: /health answered 200 ${s} s after podman run"
  if [ "$i" = 1 ]; then
    pm 30 healthcheck run "$CONTAINER" || fail "HEALTHCHECK (podman healthcheck run)"
    echo "healthcheck: healthy"
    uid=$(pm 30 exec "$CONTAINER" id -u) || fail "podman exec"
    [ "$uid" = 10001 ] || fail "the service runs as uid $uid, not 10001"
    logs=$(pm 30 logs "$CONTAINER" 2>&1)
    line=$(grep '"message":"listening"' <<<"$logs") || fail "no listening log line"
    grep -q '"queue_capacity":64' <<<"$line" || fail "the mounted config did not reach the service"
    grep -q '"max_batch":3' <<<"$line" || fail "FACEGATE_MAX_BATCH did not reach the service"
    echo "config: mounted file and environment applied; uid 10001; device: $(grep -o '"device":"[^"]*"' <<<"$line")"
    v=$(python3 tools/container/probe.py verify "$URL/v1/verify" data/face-a.png data/face-b.png) ||
      fail "/v1/verify: $v"
    echo "verify: $v"
  fi
  pm 30 stop -t 10 "$CONTAINER" >/dev/null || fail "podman stop"
  code=$(pm 30 inspect --format '{{.State.ExitCode}}' "$CONTAINER") || fail "podman inspect"
  [ "$code" = 0 ] || fail "the service exited $code on SIGTERM"
  logs=$(pm 30 logs "$CONTAINER" 2>&1)
  grep -q '^facegate: stopped' <<<"$logs" || fail "no clean stop"
  pm 30 rm "$CONTAINER" >/dev/null
  CONTAINER=""
done

size=$(pm 30 image inspect --format '{{.Size}}' "$IMAGE")
base=$(pm 30 image inspect --format '{{.Size}}' "$BASE")
median=$(printf '%s\n' "${TIMES[@]}" | sort -n | sed -n "$(((RUNS + 1) / 2))p")
echo "size: $size bytes ($((size / 1000000)) MB; base $((base / 1000000)) MB," \
  "binary $(($(stat -c %s "$WORK/ctx/out/facegate") / 1000000)) MB)"
echo "start: median $median s of ${TIMES[*]} (podman run to the first 200 of /health)"
echo "build.sh: OK"
