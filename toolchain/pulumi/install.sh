#!/usr/bin/env bash
# Builds the Pulumi toolchain that `pulumi up` of infra/ needs, from source through the Go module proxy, pinned by
# the wrapper modules next to this script (go.mod + go.sum each):
#   cli/         pulumi, pulumi-language-nodejs   (github.com/pulumi/pulumi/pkg/v3 + sdk/v3 at PULUMI_VERSION;
#                                                  the language host's source is copied from that tag: the proxy
#                                                  does not serve its module)
#   kubernetes/  pulumi-resource-kubernetes       (github.com/pulumi/pulumi-kubernetes/provider/v4 at the commit of
#                                                  tag v$KUBERNETES_PROVIDER_VERSION)
# pulumi and its language host land in $RLKUBE_HOME/bin (the CLI finds the host next to itself). The provider is
# installed as a plugin into $RLKUBE_HOME/pulumi (PULUMI_HOME) at the version @pulumi/kubernetes in infra/package.json
# asks for, so `pulumi up` finds it offline; it is kept off PATH (an ambient provider would override every version).
# Idempotent: a binary is skipped when $RLKUBE_HOME/stamps/<name> holds its pin. Called by toolchain/install.sh.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
RLKUBE_HOME=${RLKUBE_HOME:-$HOME/.cache/rlkube}
bin="$RLKUBE_HOME/bin" stamps="$RLKUBE_HOME/stamps"
export PULUMI_HOME="$RLKUBE_HOME/pulumi" PULUMI_SKIP_UPDATE_CHECK=true
mkdir -p "$bin" "$stamps" "$PULUMI_HOME"
export GOTOOLCHAIN=local GOFLAGS="-mod=readonly -buildvcs=false" CGO_ENABLED=0

PULUMI_VERSION=v3.248.0             # must match cli/go.mod and @pulumi/pulumi in infra/package.json
KUBERNETES_PROVIDER_VERSION=4.25.0  # must match kubernetes/go.mod (its pseudo-version is this tag's commit) and
                                    # @pulumi/kubernetes in infra/package.json (the plugin version the SDK asks for)
version_x="-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$PULUMI_VERSION"
provider_x="-X github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/version.Version=$KUBERNETES_PROVIDER_VERSION"

exec 9>"$RLKUBE_HOME/.pulumi-install.lock"
if command -v flock >/dev/null; then flock 9; fi

# build NAME DIR PACKAGE PIN LDFLAGS OUT: go build in DIR, written to a temp name, then moved to OUT.
build() {
  local name=$1 dir=$2 pkg=$3 pin=$4 xflags=$5 out=$6 start=$SECONDS
  echo "toolchain/pulumi: building $name ($pin)"
  (cd "$dir" && go build -trimpath -ldflags="-s -w $xflags" -o "$out.tmp.$$" "$pkg")
  mv -f "$out.tmp.$$" "$out"
  echo "toolchain/pulumi: built $name in $((SECONDS - start))s"
}
built() { [[ -f "$stamps/$1" && "$(cat "$stamps/$1")" == "$2" ]]; }

pin="github.com/pulumi/pulumi@$PULUMI_VERSION"
if ! built pulumi "$pin" || [[ ! -x "$bin/pulumi" ]]; then
  build pulumi "$here/cli" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi "$pin" "$version_x" "$bin/pulumi"
  echo "$pin" >"$stamps/pulumi"
fi
pin="github.com/pulumi/pulumi/sdk/nodejs/cmd/pulumi-language-nodejs@$PULUMI_VERSION+$(cat "$here"/cli/language-nodejs/*.go | sha256sum | cut -c1-16)"
if ! built pulumi-language-nodejs "$pin" || [[ ! -x "$bin/pulumi-language-nodejs" ]]; then
  build pulumi-language-nodejs "$here/cli" ./language-nodejs "$pin" "$version_x" "$bin/pulumi-language-nodejs"
  echo "$pin" >"$stamps/pulumi-language-nodejs"
fi

# The provider's main package embeds its schema with the version written in (upstream's `go generate`, which the
# module on the proxy lacks): build upstream's main.go with those files in a copy of the wrapper, outside the repository.
pin="github.com/pulumi/pulumi-kubernetes/provider/v4@v$KUBERNETES_PROVIDER_VERSION"
plugin_dir="$PULUMI_HOME/plugins/resource-kubernetes-v$KUBERNETES_PROVIDER_VERSION"
if ! built pulumi-resource-kubernetes "$pin" || [[ ! -x "$plugin_dir/pulumi-resource-kubernetes" ]]; then
  src="$RLKUBE_HOME/src/pulumi-resource-kubernetes"
  rm -rf "$src" && mkdir -p "$src"
  upstream=$(cd "$here/kubernetes" && go mod download github.com/pulumi/pulumi-kubernetes/provider/v4 &&
    go list -m -f '{{.Dir}}' github.com/pulumi/pulumi-kubernetes/provider/v4)/cmd/pulumi-resource-kubernetes
  cp "$here/kubernetes/go.mod" "$here/kubernetes/go.sum" "$upstream/main.go" "$src/" && chmod u+w "$src"/*
  node -e '
    const fs = require("node:fs");
    const [from, to, version] = process.argv.slice(1);
    const schema = JSON.parse(fs.readFileSync(`${from}/schema.json`, "utf8"));
    fs.writeFileSync(`${to}/schema-embed.json`, JSON.stringify({ ...schema, version }));
    fs.writeFileSync(`${to}/terraform-mapping-embed.json`, JSON.stringify(JSON.parse(fs.readFileSync(`${from}/terraform-mapping.json`, "utf8"))));
  ' "$upstream" "$src" "$KUBERNETES_PROVIDER_VERSION"
  build pulumi-resource-kubernetes "$src" . "$pin" "$provider_x" "$src/pulumi-resource-kubernetes"
  "$bin/pulumi" plugin rm resource kubernetes "$KUBERNETES_PROVIDER_VERSION" --yes >/dev/null 2>&1 || true
  "$bin/pulumi" plugin install resource kubernetes "$KUBERNETES_PROVIDER_VERSION" --file "$src/pulumi-resource-kubernetes"
  rm -rf "$src"
  echo "$pin" >"$stamps/pulumi-resource-kubernetes"
fi

# Smoke check: the CLI reports its pin and lists the provider at the version the SDK asks for.
if [[ "$("$bin/pulumi" version)" != "$PULUMI_VERSION" ]]; then
  echo "toolchain/pulumi: $bin/pulumi does not report $PULUMI_VERSION; delete $stamps/pulumi and rerun" >&2
  exit 1
fi
# The list is captured before it is searched: piped into `grep -q`, pulumi was killed by SIGPIPE whenever grep had
# matched and exited before pulumi's last write (its table, "\n" and the cache-size line are three writes), and
# pipefail turned that into "not installed" (shown with writes delayed by strace: exit 141 every time).
plugins=$("$bin/pulumi" plugin ls 2>/dev/null)
if ! grep -Eq "^kubernetes +resource +$KUBERNETES_PROVIDER_VERSION " <<<"$plugins"; then
  echo "toolchain/pulumi: kubernetes provider $KUBERNETES_PROVIDER_VERSION not installed in $PULUMI_HOME; delete $stamps/pulumi-resource-kubernetes and rerun" >&2
  exit 1
fi
echo "toolchain/pulumi: ready (pulumi $PULUMI_VERSION, kubernetes provider $KUBERNETES_PROVIDER_VERSION; PULUMI_HOME=$PULUMI_HOME) in $bin"
