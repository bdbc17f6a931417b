# Sourced by the service benches: `launch ARGS...` starts `$BIN serve ARGS... --bind
# 127.0.0.1:0 --log-file /dev/null` and sets PID and ADDR once it listens.
launch() {
  local log; log=$(mktemp)
  "$BIN" serve "$@" --bind 127.0.0.1:0 --log-file /dev/null 2>"$log" &
  PID=$!
  for _ in $(seq 600); do
    ADDR=$(sed -n 's/^facegate: listening on //p' "$log")
    [ -n "$ADDR" ] && break
    sleep 0.1
  done
  [ -n "$ADDR" ] || { cat "$log" >&2; rm -f "$log"; exit 1; }
  rm -f "$log"
}
