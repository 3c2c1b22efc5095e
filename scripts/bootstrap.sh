# Sourced by ./isthmus and scripts/test: create .venv and install Isthmus on first use.
# Re-installs when pyproject.toml or constraints.txt change (a stamp records their hash).
isthmus_bootstrap() {
  local root="$1" extras="$2"
  local venv="$root/.venv"
  local py="${ISTHMUS_PYTHON:-}"
  if [ -z "$py" ]; then
    for candidate in python3.11 python3; do
      if command -v "$candidate" >/dev/null 2>&1 && \
         "$candidate" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' 2>/dev/null; then
        py="$candidate"; break
      fi
    done
  fi
  if [ -z "$py" ]; then
    echo "isthmus: Python 3.11 is required (set ISTHMUS_PYTHON to its path)" >&2
    return 1
  fi
  local hash
  hash="$(cat "$root/pyproject.toml" "$root/constraints.txt" 2>/dev/null | sha256sum | cut -c1-16)"
  local stamp="$venv/.isthmus-installed-${extras:-base}-$hash"
  if [ -f "$stamp" ]; then return 0; fi
  # a dev install includes the base one
  if [ -z "$extras" ] && [ -f "$venv/.isthmus-installed-dev-$hash" ]; then return 0; fi
  echo "isthmus: setting up $venv (first run; this takes a minute)..." >&2
  [ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
  local log="$venv/install.log"
  local target="$root"
  [ -n "$extras" ] && target="$root[$extras]"
  local constraints=()
  [ -f "$root/constraints.txt" ] && constraints=(-c "$root/constraints.txt")
  if ! { "$venv/bin/python" -m pip install --upgrade pip &&
         "$venv/bin/python" -m pip install "${constraints[@]}" -e "$target"; } >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    echo "isthmus: installation failed; the full log is in $log" >&2
    return 1
  fi
  rm -f "$venv"/.isthmus-installed-* 
  touch "$stamp"
}
