#!/usr/bin/env bash
# The inspector in a real browser: starts the demo (examples/inspector.rs) on an ephemeral
# loopback port, loads its pages in headless Chromium (Debian's `chromium`, installed with
# apt-get when missing), checks the rendered text (cache names, counts that change between two
# loads, the '<script>' key shown as text and never run, a miss-ratio curve) and saves a screenshot to
# docs/inspector.png (the README shows it), or to $INSPECTOR_SCREENSHOT if set (CI).
#
# Usage: bash scripts/inspector-browser-test.sh    (from anywhere; exits non-zero on failure)
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v chromium >/dev/null 2>&1; then
  echo "installing chromium (apt-get)"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

cargo build -q --example inspector --features inspector
work=$(mktemp -d)
demo_pid=
cleanup() {
  [ -n "$demo_pid" ] && kill "$demo_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# Read-only: the screenshot shows what a default deployment shows.
./target/debug/examples/inspector --port 0 --seconds 120 --read-only >"$work/demo.log" 2>&1 &
demo_pid=$!
for _ in $(seq 1 100); do
  grep -q 'listening on' "$work/demo.log" 2>/dev/null && break
  sleep 0.1
done
base=$(grep -o 'http://127\.0\.0\.1:[0-9]*/' "$work/demo.log" | head -1)
[ -n "$base" ] || { echo "FAIL: the demo did not start"; cat "$work/demo.log"; exit 1; }
echo "demo at $base"

browse() { # browse FLAGS... URL: headless Chromium with a throwaway profile, no network chatter
  timeout 60 chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --disable-dev-shm-usage --user-data-dir="$(mktemp -d -p "$work")" "$@" 2>>"$work/chromium.log"
}

fail() { echo "FAIL: $*"; exit 1; }

# 1. The index: every demo cache is listed.
browse --dump-dom "$base" >"$work/index1.html"
for cache in inspector::fib inspector::word_count inspector::render inspector::session_token; do
  grep -q "$cache" "$work/index1.html" || fail "index does not list $cache"
done
echo "ok: the index lists the four demo caches"

# 2. Counts change between two loads (the demo's threads keep calling).
hits() { # total of the hits column (the 3rd cell of each cache's row) in a dumped DOM
  tr -d '\n' <"$1" | sed 's#</tr>#\n#g' | grep 'href="/cache/' |
    awk -F'<td' '{ sub(/^[^>]*>/, "", $4); sub(/<.*/, "", $4); total += $4 } END { print total + 0 }'
}
first=$(hits "$work/index1.html")
sleep 1
browse --dump-dom "$base" >"$work/index2.html"
second=$(hits "$work/index2.html")
[ -n "$first" ] && [ -n "$second" ] || fail "no hit counts rendered"
[ "$second" -gt "$first" ] || fail "hits did not grow between loads ($first then $second)"
echo "ok: hits grew between two loads ($first, then $second)"

# 3. The '<script>' key renders as text: the DOM holds it escaped, and no script element ran
#    or exists in the page (the demo's key would have created one).
browse --dump-dom "${base}cache/inspector%3A%3Arender?filter=script" >"$work/render.html"
grep -q "&lt;script&gt;alert('hi')&lt;/script&gt;" "$work/render.html" ||
  fail "the <script> key is not shown as text"
if grep -qi '<script' "$work/render.html"; then fail "a <script> element is in the DOM"; fi
echo "ok: the '<script>' key is shown as text"

# 4. Hidden values stay hidden in the rendered page.
browse --dump-dom "${base}cache/inspector%3A%3Asession_token" >"$work/session.html"
grep -q '(hidden)' "$work/session.html" || fail "session values are not hidden"
if grep -q 'secret-' "$work/session.html"; then fail "a hidden value is rendered"; fi
echo "ok: the sensitive cache's values are hidden"

# 5. The word counter's miss-ratio curve is drawn (an inline SVG with its caption).
browse --dump-dom "${base}cache/inspector%3A%3Aword_count" >"$work/words.html"
grep -q '<figure class="mrc"><svg' "$work/words.html" || fail "no miss-ratio curve plot"
echo "ok: the word counter's miss-ratio curve is drawn"

# 6. The screenshot for the README.
shot=${INSPECTOR_SCREENSHOT:-$PWD/docs/inspector.png}
mkdir -p "$(dirname "$shot")"
browse --screenshot="$shot" --window-size=1480,290 --hide-scrollbars "$base" >/dev/null
[ -s "$shot" ] || fail "no screenshot"
echo "ok: $shot ($(stat -c %s "$shot") bytes)"
echo "inspector browser test passed"
