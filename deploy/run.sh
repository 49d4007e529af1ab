#!/usr/bin/env bash
# Run N daphne processes of the chat on one machine, each with a worker, optionally behind nginx on one address.
#
#   deploy/run.sh [-n PROCESSES] [-p FIRST_PORT] [--nginx PORT]
#
# The environment is the app's (README "Configuration"): set DATABASE_URL (PostgreSQL) and REDIS_URL, or the
# processes will not share anything (the script refuses N > 1 without REDIS_URL). Each process serves the
# Procfile's web command on 127.0.0.1:FIRST_PORT+i. With --nginx PORT, an nginx (Debian's, apt install nginx)
# runs in the foreground's process group with deploy/nginx.conf's settings and an upstream of exactly these
# processes, on 127.0.0.1:PORT. Ctrl-C or SIGTERM stops everything it started (daphne closes its sockets
# with 1012, so browsers reconnect). Logs go to $LOG_DIR (default: a new temporary directory).
set -euo pipefail
cd "$(dirname "$0")/.."

processes=2
first_port=8001
nginx_port=""
while [ $# -gt 0 ]; do
  case "$1" in
    -n) processes=$2; shift 2 ;;
    -p) first_port=$2; shift 2 ;;
    --nginx) nginx_port=$2; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
if [ "$processes" -gt 1 ] && [ -z "${REDIS_URL:-}" ]; then
  echo "run.sh: $processes processes need REDIS_URL (and DATABASE_URL): without them nothing is shared" >&2
  exit 2
fi
daphne=${DAPHNE:-.venv/bin/daphne}
python=${PYTHON:-.venv/bin/python}
if [ -n "$nginx_port" ]; then
  # nginx sends the attachments' bytes from its internal location, once the app has checked the reader.
  export CHAT_ATTACHMENT_ACCEL_REDIRECT=${CHAT_ATTACHMENT_ACCEL_REDIRECT-/_attachments/}
fi
log_dir=${LOG_DIR:-$(mktemp -d -t chat-run-XXXXXX)}
export DJANGO_SETTINGS_MODULE=config.settings
# One descriptor per socket.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

pids=()
stop() {
  trap - INT TERM EXIT
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait || true
}
trap stop INT TERM EXIT

ports=()
for ((i = 0; i < processes; i++)); do
  port=$((first_port + i))
  ports+=("$port")
  "$daphne" -b 127.0.0.1 -p "$port" --proxy-headers \
    --websocket-max-frame-size 65536 --websocket-max-message-size 2097152 \
    config.asgi:application >"$log_dir/daphne-$port.log" 2>&1 &
  pids+=("$!")
  echo "daphne pid $! on http://127.0.0.1:$port (log $log_dir/daphne-$port.log)"
  # A worker beside each (delayed work: email notifications); any number is safe, each task runs once.
  "$python" manage.py db_worker --no-reload >"$log_dir/worker-$port.log" 2>&1 &
  pids+=("$!")
  echo "worker pid $! (log $log_dir/worker-$port.log)"
done

if [ -n "$nginx_port" ]; then
  nginx=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}
  conf="$log_dir/nginx.conf"
  {
    echo "daemon off; worker_processes 1; pid $log_dir/nginx.pid; error_log $log_dir/nginx-error.log;"
    echo "events { worker_connections 16384; }"
    echo "http {"
    echo "  access_log off; client_body_temp_path $log_dir; proxy_temp_path $log_dir;"
    echo "  fastcgi_temp_path $log_dir; uwsgi_temp_path $log_dir; scgi_temp_path $log_dir;"
    # deploy/nginx.conf with this run's upstream, port, static and media folders.
    sed -e "/^upstream chat_daphne/,/^}/c\\
upstream chat_daphne { least_conn; $(printf 'server 127.0.0.1:%s max_fails=0; ' "${ports[@]}")keepalive 32; }" \
      -e "s#listen 80;#listen 127.0.0.1:$nginx_port;#" \
      -e "s#server_name chat.example.com;#server_name 127.0.0.1 localhost;#" \
      -e "s#/srv/chat/staticfiles/#$PWD/staticfiles/#" \
      -e "s#/srv/chat/media/#${MEDIA_ROOT:-$PWD/media}/#" \
      deploy/nginx.conf
    echo "}"
  } >"$conf"
  "$nginx" -c "$conf" -p "$log_dir" &
  pids+=("$!")
  echo "nginx pid $! on http://127.0.0.1:$nginx_port (config $conf)"
fi
wait -n "${pids[@]}" || true
echo "run.sh: a process exited; stopping the others" >&2
