#!/usr/bin/env bash
# Installs rlkube's pinned toolchain binaries (Go programs, built once per machine through the Go module
# proxy) and the Python venv of the trainer and engines. Idempotent: a binary already built at its pinned version is
# kept. Binaries land in $RLKUBE_HOME/bin (default ~/.cache/rlkube/bin), outside the repository.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
RLKUBE_HOME=${RLKUBE_HOME:-$HOME/.cache/rlkube}
bin="$RLKUBE_HOME/bin"
mkdir -p "$bin" "$RLKUBE_HOME/stamps"
export GOBIN="$bin" GOFLAGS=-mod=mod GOTOOLCHAIN=local

# name  go-package@version  (one line each; the version is the pin)
tools=(
  "nats-server github.com/nats-io/nats-server/v2@v2.12.15"
  "nats github.com/nats-io/natscli/nats@v0.5.1"
)

install_go_tool() {
  local name=$1 pkg=$2 stamp="$RLKUBE_HOME/stamps/$1"
  if [[ -x "$bin/$name" && -f "$stamp" && "$(cat "$stamp")" == "$pkg" ]]; then return 0; fi
  echo "toolchain: building $name ($pkg)"
  go install "$pkg"
  echo "$pkg" > "$stamp"
}
for t in "${tools[@]}"; do install_go_tool $t; done

# Kubernetes binaries come from the wrapper module in toolchain/kube (replace lines for the staging modules).
if [[ -f "$here/kube/install.sh" ]]; then bash "$here/kube/install.sh"; fi
# The Pulumi CLI, its Node.js language host and the Kubernetes provider (toolchain/pulumi: `pulumi up` of infra/).
bash "$here/pulumi/install.sh"

# Python: python/'s pinned stack (python/requirements.txt, every version fixed by requirements.lock) in a venv
# outside the repository, then python/ itself installed into it (editable, no dependencies): its packages import and
# its console scripts run from the venv without PYTHONPATH. The wheels stay in $RLKUBE_HOME/wheels: the image builds
# install the same files offline. The venv is rebuilt only when the pins change.
venv="$RLKUBE_HOME/venv" wheels="$RLKUBE_HOME/wheels" project="$here/../python"
req="$project/requirements.txt" lock="$project/requirements.lock"
pins=$(cat "$req" "$lock" | sha256sum | cut -c1-16)
if [[ ! -x "$venv/bin/python" || "$(cat "$RLKUBE_HOME/stamps/venv" 2>/dev/null)" != "$pins" ]]; then
  echo "toolchain: python venv ($venv) from $req"
  start=$SECONDS
  # `pip wheel`, not `pip download`: the few sdists (reasoning-gym's cellpylib, pycosat, zss) are built into wheels
  # here, so the offline install below needs no build dependencies (setuptools) from an index.
  python3 -m pip wheel -q -w "$wheels" -r "$req" -c "$lock"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --no-index --find-links "$wheels" -r "$req" -c "$lock"
  echo "$pins" >"$RLKUBE_HOME/stamps/venv"
  echo "toolchain: python venv ready in $((SECONDS - start))s"
fi
# Every run (about 3 s): the venv serves the checkout that last ran setup (local/python.ts checks which one).
"$venv/bin/python" -m pip install -q --no-deps --no-build-isolation --no-index -e "$project"
# The test cluster's real node (test/harness/node.ts) and image builds (npm run images): Debian's runc, CNI
# plugins, buildah and debootstrap, and the network tools kubelet and kube-proxy call.
node_pkgs=(runc containernetworking-plugins buildah debootstrap iptables conntrack ethtool socat unzip)
missing=()
for p in "${node_pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]} > 0)); then
  echo "toolchain: installing ${missing[*]} (apt)"
  apt_prefix=(); [[ $(id -u) -ne 0 ]] && apt_prefix=(sudo)
  "${apt_prefix[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${apt_prefix[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
fi
echo "toolchain: ready in $bin"
