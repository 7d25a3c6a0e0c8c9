#!/usr/bin/env bash
# nginx_errors.sh - the errors nginx answers itself, most of them before it
# has chosen a location, are JSON (SPEC section 5; tests/it/nginx_errors.py):
# on make run's nginx, then on a port where the chat's server is not the
# default one, as chat-site.conf's comments describe, and behind auth_basic
# (401). deploy.sh runs the same raw checks on the production block.
. "$(dirname "$0")/../lib.sh"
stack_up main || { finish; exit 1; }
run_checks /usr/bin/python3 "$ROOT/tests/it/nginx_errors.py" "${BASE##*:}"

# Another site is the port's default server. Until a Host header names the
# chat's server nginx answers with the default server's error pages: JSON
# when that server includes chat-errors.conf, as chat-site.conf says to.
# On another port, the chat behind auth_basic (as chat-site.conf shows it).
N=$TMP/shared
mkdir -p "$N/logs" "$N/tmp"
cp -r "$STACK_DIR/nginx/snippets" "$N/"
echo 'u:{PLAIN}pw' > "$N/htpasswd"
port=$(free_port); auth_port=$(free_port)
{ nginx_conf_head "$N" 1 64; cat <<NGINX
    large_client_header_buffers 4 16386;
    upstream chat_fcgi { server unix:$STACK_DIR/fcgi.sock; }
    upstream chat_ws { server 127.0.0.1:$(free_port); }
    server {
        listen 127.0.0.1:$port default_server;
        server_name other.example;
        include snippets/chat-errors.conf;
        location / { return 200 "another site\n"; }
    }
    server {
        listen 127.0.0.1:$port;
        server_name chat.example;
        root $ROOT/htdocs;
        set \$chat_user "";
        include snippets/chat-locations.conf;
    }
    server {
        listen 127.0.0.1:$auth_port;
        root $ROOT/htdocs;
        auth_basic chat;
        auth_basic_user_file $N/htpasswd;
        set \$chat_user \$remote_user;
        include snippets/chat-locations.conf;
    }
}
NGINX
} > "$N/nginx.conf"
nginx -p "$N" -c "$N/nginx.conf" -e "$N/logs/error.log" >>"$N/logs/error.log" 2>&1 </dev/null &
echo $! > "$N/nginx.run.pid"
trap '[ -f "$N/nginx.run.pid" ] && kill "$(cat "$N/nginx.run.pid")" 2>/dev/null; stack_down_all' EXIT
for _ in $(seq 1 100); do curl -s -o /dev/null -H 'Host: chat.example' "http://127.0.0.1:$port/healthz" && break; sleep 0.05; done
req -H 'Host: chat.example' "http://127.0.0.1:$port/get/msg?index=0"
check "the chat's server behind another default server: 200" 200 "$STATUS"
req -H 'Host: other.example' "http://127.0.0.1:$port/"
check "the default server is the other site" "another site" "$BODY"
run_checks /usr/bin/python3 "$ROOT/tests/it/nginx_errors.py" "$port" chat.example
for path in /get/msg /send/msg /ws /metrics/ws /nowhere; do
    req "http://127.0.0.1:$auth_port$path"
    check_error "no credentials on $path" 401
    check "no credentials on $path: WWW-Authenticate kept" 'basic realm="chat"' "$(header www-authenticate)"
done
req -u u:pw "http://127.0.0.1:$auth_port/get/msg?index=0"
check "with credentials: 200" 200 "$STATUS"
req -u u:pw "http://127.0.0.1:$auth_port/nowhere"
check_error "with credentials, a path nobody serves" 404
pid=$(cat "$N/nginx.run.pid"); rm -f "$N/nginx.run.pid"
kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null

finish
