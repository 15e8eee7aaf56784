# shellcheck shell=bash
# The original Node service and its client SDK, installed from the npm registry for the
# compatibility tests (sourced, not run): they run the original itself against the same stores
# and config as this service, so compatibility is checked on real bytes.
#
#   node_original_install   installs (if missing) service-sessions-node and client-sessions-node
#                           into a cache folder outside the repository and exports
#                           SESSIONS_NODE_DIR (the service package: bin/main.js, config/config.yml)
#                           and SESSIONS_NODE_CLIENT_DIR (the client package)

NODE_ORIGINAL_SERVICE_VERSION="1.1.1"
NODE_ORIGINAL_CLIENT_VERSION="1.1.3"
NODE_ORIGINAL_CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/service-sessions"

node_original_install() {
    local root="$NODE_ORIGINAL_CACHE/node-original-$NODE_ORIGINAL_SERVICE_VERSION-$NODE_ORIGINAL_CLIENT_VERSION"
    if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
        echo "node and npm are needed to run the original service in the compatibility tests" >&2
        return 1
    fi
    # `.complete` is written last, so an interrupted install is redone, not half-used.
    if [[ ! -f "$root/.complete" ]]; then
        echo "Installing the original service from npm (service-sessions-node@$NODE_ORIGINAL_SERVICE_VERSION," \
            "client-sessions-node@$NODE_ORIGINAL_CLIENT_VERSION)..." >&2
        rm -rf "$root"
        mkdir -p "$root"
        printf '{"name":"service-sessions-compat","private":true}\n' >"$root/package.json"
        (cd "$root" && npm install --no-audit --no-fund --loglevel=error \
            "service-sessions-node@$NODE_ORIGINAL_SERVICE_VERSION" \
            "client-sessions-node@$NODE_ORIGINAL_CLIENT_VERSION" >&2)
        touch "$root/.complete"
    fi
    export SESSIONS_NODE_DIR="$root/node_modules/service-sessions-node"
    export SESSIONS_NODE_CLIENT_DIR="$root/node_modules/client-sessions-node"
}
