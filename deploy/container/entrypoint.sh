#!/bin/sh
# Container entrypoint of chroom-orchestrator (docs/deploy.md, "Container").
#
# When the config template exists (default /etc/chroom/orchestrator.yaml.in), every
# ${NAME} in it is replaced by that environment variable (envsubst) and the result,
# written to /tmp/orchestrator.yaml (mode 0600: it may hold secrets), is the config.
# Only the braced form is replaced, and every variable it names must be set: a missing one
# stops the container with a message rather than starting a peer with an empty value.
# Without a template, /etc/chroom/orchestrator.yaml is the config when it exists.
#
# Arguments are extra daemon flags (--log-level debug). An argument list that does not
# start with '-' is run as a command instead (e.g. `sh`), for debugging.
#
#   CHROOM_CONFIG_TEMPLATE  the template            (default /etc/chroom/orchestrator.yaml.in)
#   CHROOM_CONFIG_RENDERED  where it is rendered to (default /tmp/orchestrator.yaml)
#   CHROOM_CONFIG           the plain config        (default /etc/chroom/orchestrator.yaml)
#   CHROOM_ORCHESTRATOR     the daemon              (default /usr/local/bin/chroom-orchestrator)
set -eu

template=${CHROOM_CONFIG_TEMPLATE:-/etc/chroom/orchestrator.yaml.in}
rendered=${CHROOM_CONFIG_RENDERED:-/tmp/orchestrator.yaml}
config=${CHROOM_CONFIG:-/etc/chroom/orchestrator.yaml}
daemon=${CHROOM_ORCHESTRATOR:-/usr/local/bin/chroom-orchestrator}

if [ "$#" -gt 0 ] && [ "${1#-}" = "$1" ]; then
  exec "$@"
fi

if [ -f "$template" ]; then
  # The names the template uses, each once: ${POD_NAME} -> POD_NAME.
  # shellcheck disable=SC2016 # the quotes keep ${ and } literal, on purpose
  names=$(grep -o '\${[A-Za-z_][A-Za-z0-9_]*}' "$template" | tr -d '${}' | sort -u || true)
  missing=""
  shell_format=""
  for name in $names; do
    # $name matched [A-Za-z_][A-Za-z0-9_]*, so it is safe to evaluate.
    if eval "[ -z \"\${$name+set}\" ]"; then
      missing="$missing $name"
    fi
    shell_format="$shell_format \${$name}"
  done
  if [ -n "$missing" ]; then
    echo "chroom-entrypoint: $template uses unset environment variable(s):$missing" >&2
    exit 2
  fi
  umask 077
  # With a SHELL-FORMAT, envsubst replaces only the names listed: any other '$' in the
  # file (in a secret, say) stays as written.
  envsubst "$shell_format" <"$template" >"$rendered.tmp"
  mv -f "$rendered.tmp" "$rendered"
  set -- --config "$rendered" "$@"
elif [ -f "$config" ]; then
  set -- --config "$config" "$@"
fi

exec "$daemon" "$@"
