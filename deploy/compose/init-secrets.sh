#!/usr/bin/env bash
# Create the secret files that deploy/compose.yaml hands to its services, once: random
# passwords, readable by you only. Existing files are kept (delete one to make a new one).
#
#   deploy/compose/init-secrets.sh
#
# The files stay in deploy/compose/secrets/ (ignored by git). Inside the containers the
# `setup` service copies each one to the service that needs it, owned by that service's user.
set -euo pipefail

dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/secrets
mkdir -p "$dir"
chmod 700 "$dir"
umask 077

random() { # 32 letters and digits: safe in URLs, config files and shell words
    local out=''
    while [ "${#out}" -lt 32 ]; do
        out+=$(head -c 64 /dev/urandom | tr -dc 'A-Za-z0-9')
    done
    printf '%s' "${out:0:32}"
}

create() { # file, content
    if [ -s "$dir/$1" ]; then
        echo "init-secrets: keeping $dir/$1"
    else
        printf '%s' "$2" >"$dir/$1"
        echo "init-secrets: created $dir/$1"
    fi
}

create redis-password "$(random)"
create elastic-password "$(random)"
create flower-basic-auth "admin:$(random)"
create grafana-admin-password "$(random)"
