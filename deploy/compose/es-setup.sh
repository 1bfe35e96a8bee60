#!/usr/bin/env bash
# The two setup steps of deploy/compose.yaml. They run as root in the Elasticsearch image, which
# has elasticsearch-certutil, unzip and curl.
#
#   es-setup.sh prepare   before anything starts: a CA and TLS certificates for Elasticsearch and
#                         Redis (volume `certs`, made once), and each service's copy of the
#                         secrets from /run/secrets, owned by that service's user, mode 600
#   es-setup.sh api-key   once Elasticsearch is up: the API key that every medline-ingest
#                         process uses, limited to the medline indices, into the `medline-secrets`
#                         volume (kept while it still authenticates, so re-runs change nothing)
#
# Nothing secret is printed, nor passed on a command line (curl reads credentials from a file).
set -euo pipefail

certs=/certs
run_secrets=/run/secrets
es_url=${ES_URL:-https://elasticsearch:9200}
index=${MEDLINE_INDEX:-medline}
ca=$certs/ca/ca.crt
api_key_file=/secrets/medline/es-api-key

# The users the images run as: Elasticsearch (uid 1000, group 0), Redis (999), medline-ingest
# (10001, deploy/Dockerfile), Grafana (472).
es_owner=1000:0
redis_owner=999:999
medline_owner=10001:10001
grafana_owner=472:0

say() { echo "es-setup: $*"; }
die() {
    echo "es-setup: error: $*" >&2
    exit 1
}

make_certs() {
    cd /usr/share/elasticsearch
    if [ ! -s "$ca" ]; then
        say "creating the CA"
        bin/elasticsearch-certutil ca --silent --pem --days 1095 --out /tmp/ca.zip
        unzip -q -o /tmp/ca.zip -d "$certs"
    fi
    if [ ! -s "$certs/elasticsearch/elasticsearch.crt" ] || [ ! -s "$certs/redis/redis.crt" ]; then
        say "creating the certificates of elasticsearch and redis"
        cat >/tmp/instances.yml <<'EOF'
instances:
  - name: elasticsearch
    dns: [elasticsearch, localhost]
    ip: [127.0.0.1]
  - name: redis
    dns: [redis, localhost]
    ip: [127.0.0.1]
EOF
        bin/elasticsearch-certutil cert --silent --pem --days 1095 --in /tmp/instances.yml \
            --ca-cert "$ca" --ca-key "$certs/ca/ca.key" --out /tmp/certs.zip
        unzip -q -o /tmp/certs.zip -d "$certs"
    fi
    # The CA certificate is public; every key is readable by its server only.
    chown -R root:root "$certs"
    chmod 755 "$certs" "$certs/ca"
    chmod 644 "$ca"
    chmod 600 "$certs/ca/ca.key"
    chown -R "$es_owner" "$certs/elasticsearch"
    chmod 750 "$certs/elasticsearch"
    chmod 640 "$certs/elasticsearch"/*
    chown -R "$redis_owner" "$certs/redis"
    chmod 750 "$certs/redis"
    chmod 640 "$certs/redis"/*
}

install_secret() { # name under /run/secrets, destination, owner
    local source=$run_secrets/$1 target=$2 owner=$3
    [ -s "$source" ] || die "secret $1 is missing or empty: run deploy/compose/init-secrets.sh"
    mkdir -p "$(dirname "$target")"
    install -m 600 -o "${owner%:*}" -g "${owner#*:}" "$source" "$target"
    chown "$owner" "$(dirname "$target")"
    chmod 700 "$(dirname "$target")"
}

prepare() {
    make_certs
    install_secret elastic_password /secrets/elasticsearch/elastic-password "$es_owner"
    install_secret redis_password /secrets/redis/redis-password "$redis_owner"
    install_secret redis_password /secrets/medline/redis-password "$medline_owner"
    install_secret flower_basic_auth /secrets/medline/flower-basic-auth "$medline_owner"
    install_secret grafana_admin_password /secrets/grafana/admin-password "$grafana_owner"
    say "certificates and secrets in place"
}

es() { # curl options... ; authenticates with the file given in $auth
    curl --silent --show-error --cacert "$ca" --config "$auth" "$@"
}

api_key() {
    local password auth=/tmp/curl-auth
    password=$(cat /secrets/elasticsearch/elastic-password)
    umask 077
    printf 'user = "elastic:%s"\n' "$password" >"$auth"

    say "waiting for Elasticsearch at $es_url"
    local i
    for i in $(seq 1 120); do
        if [ "$(es -o /dev/null -w '%{http_code}' "$es_url/_cluster/health" || true)" = 200 ]; then
            break
        fi
        [ "$i" = 120 ] && die "Elasticsearch at $es_url did not answer in 10 minutes"
        sleep 5
    done

    if [ -s "$api_key_file" ]; then
        printf 'header = "Authorization: ApiKey %s"\n' "$(cat "$api_key_file")" >/tmp/curl-key
        if [ "$(auth=/tmp/curl-key es -o /dev/null -w '%{http_code}' \
            "$es_url/_security/_authenticate" || true)" = 200 ]; then
            say "the existing API key still authenticates; keeping it"
            return
        fi
        say "the existing API key no longer authenticates; creating a new one"
    fi

    # What the workers, beat, the exporter and the CLI do: cluster health, the index template,
    # the versioned index and its alias, bulk writes, refresh/replica tuning during loads, search.
    local body response encoded
    body=$(
        cat <<EOF
{
  "name": "medline-ingest",
  "metadata": {"created_by": "deploy/compose es-setup"},
  "role_descriptors": {
    "medline-ingest": {
      "cluster": ["monitor", "manage_index_templates"],
      "indices": [
        {
          "names": ["$index", "$index-*"],
          "privileges": ["create_index", "manage", "write", "read", "view_index_metadata"]
        }
      ]
    }
  }
}
EOF
    )
    response=$(es -X POST -H 'Content-Type: application/json' --data-binary "$body" \
        "$es_url/_security/api_key")
    encoded=$(printf '%s' "$response" | sed -n 's/.*"encoded" *: *"\([^"]*\)".*/\1/p')
    [ -n "$encoded" ] || die "Elasticsearch did not create the API key: ${response:0:300}"
    mkdir -p "$(dirname "$api_key_file")"
    printf '%s' "$encoded" >"$api_key_file.new"
    chown "$medline_owner" "$api_key_file.new"
    chmod 600 "$api_key_file.new"
    mv "$api_key_file.new" "$api_key_file"
    say "API key created for indices $index and $index-*"
}

case "${1:-}" in
    prepare) prepare ;;
    api-key) api_key ;;
    *) die "usage: es-setup.sh prepare|api-key" ;;
esac
