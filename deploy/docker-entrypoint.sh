#!/bin/sh
# Entry point of the medline-ingest image.
#
# 1. Secrets handed over as files: for each NAME below, if NAME_FILE is set, the file's content
#    becomes NAME (Docker/Compose secrets, mounted Kubernetes Secrets). Setting both is an error.
# 2. Runs `medline-ingest ARGS...`, or ARGS as a command if it starts with one of the programs
#    below (e.g. `celery -A worker.celery_app flower`, `python -m worker.health ready`).
#
# The program replaces this shell (exec), so it is PID 1 and receives SIGTERM directly.
set -eu

for name in MEDLINE_REDIS_PASSWORD MEDLINE_ES_API_KEY MEDLINE_ES_PASSWORD FLOWER_BASIC_AUTH; do
    file_var="${name}_FILE"
    eval "file=\${$file_var:-}"
    [ -n "$file" ] || continue
    eval "direct=\${$name:-}"
    if [ -n "$direct" ]; then
        echo "medline-entrypoint: set $name or $file_var, not both" >&2
        exit 2
    fi
    if [ ! -r "$file" ]; then
        echo "medline-entrypoint: $file_var: cannot read $file" >&2
        exit 2
    fi
    value=$(cat "$file")
    export "$name=$value"
    unset "$file_var"
done

case "${1:-}" in
    celery | python | python3 | medline-ingest | sh)
        exec "$@"
        ;;
    *)
        exec medline-ingest "$@"
        ;;
esac
