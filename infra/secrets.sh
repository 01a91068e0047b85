# Sourced by the server scripts: fills unset variables from $GRAFT_SECRETS_FILE, a file of
# KEY=VALUE lines (no quoting, no expansion, # comments) that only its owner may read (mode 600
# or 400). Variables already in the environment win. Secrets never live in the repo.
load_secrets_file() {
  local file="${GRAFT_SECRETS_FILE:-}"
  [[ -z "$file" ]] && return 0
  if [[ ! -f "$file" ]]; then
    echo "error: GRAFT_SECRETS_FILE $file does not exist" >&2
    return 1
  fi
  local mode owner
  mode="$(stat -c %a "$file")"
  owner="$(stat -c %u "$file")"
  if [[ "$mode" != 600 && "$mode" != 400 ]] || [[ "$owner" != "$(id -u)" ]]; then
    echo "error: $file must belong to you with mode 600 (it is $mode, uid $owner): chmod 600 $file" >&2
    return 1
  fi
  local line key value
  while IFS= read -r line || [[ -n "$line" ]]; do
    [[ "$line" =~ ^[[:space:]]*(#|$) ]] && continue
    if [[ ! "$line" =~ ^([A-Z_][A-Z0-9_]*)=(.*)$ ]]; then
      echo "error: $file: not KEY=VALUE: ${line%%=*}=..." >&2
      return 1
    fi
    key="${BASH_REMATCH[1]}"
    value="${BASH_REMATCH[2]}"
    [[ -z "${!key:-}" ]] && export "$key=$value"
  done <"$file"
  return 0
}
