#!/usr/bin/env bash
# Builds the Kubernetes control-plane toolchain the tests run (test/harness/kube.ts) from source, through the
# Go module proxy, pinned by the wrapper modules next to this script (go.mod + go.sum each):
#   k8s/   kube-apiserver, kube-controller-manager, kube-scheduler, kubectl   (k8s.io/kubernetes + staging replaces)
#   etcd/  etcd                                                               (go.etcd.io/etcd/server/v3)
#   kwok/  kwok, kwokctl                                                      (sigs.k8s.io/kwok)
#   helm/  helm                                                               (helm.sh/helm/v3)
#   k8s/   kubelet, kube-proxy                  (the real node of test/harness/node.ts; same pin as above)
#   containerd/  containerd, containerd-shim-runc-v2, ctr                     (github.com/containerd/containerd/v2)
#   coredns/     coredns                                                      (github.com/coredns/coredns)
#   pause/       pause                        (the real node's sandbox process; our own code, no dependencies)
# Idempotent: a binary is skipped when $RLKUBE_HOME/stamps/<name> holds its pin and $RLKUBE_HOME/bin/<name>
# exists. Called by toolchain/install.sh; runnable alone. Env: RLKUBE_HOME (default ~/.cache/rlkube),
# GOBIN (default $RLKUBE_HOME/bin), RLKUBE_GO_BUILD_P (go build -p, default: Go's, i.e. the CPU count).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
RLKUBE_HOME=${RLKUBE_HOME:-$HOME/.cache/rlkube}
bin=${GOBIN:-$RLKUBE_HOME/bin}
stamps="$RLKUBE_HOME/stamps"
mkdir -p "$bin" "$stamps"
# The wrapper modules are complete (go.sum committed): never let a build rewrite them.
export GOTOOLCHAIN=local GOFLAGS="-mod=readonly -buildvcs=false"

K8S_VERSION=v1.36.3   # must match k8s/go.mod (require + every staging replace at v0.36.3)
ETCD_VERSION=v3.6.16  # must match etcd/go.mod
KWOK_VERSION=v0.8.0   # must match kwok/go.mod; kwok v0.8.0 targets Kubernetes 1.36 (etcd 3.6 for it)
HELM_VERSION=v3.21.4  # must match helm/go.mod
CONTAINERD_VERSION=v2.4.2  # must match containerd/go.mod
COREDNS_VERSION=v1.15.0    # must match coredns/go.mod

# name  module-dir  package  pin(stamp)  extra -ldflags
k8s_x() { # the version stamping k8s' hack/lib/version.sh does; kwokctl parses `<binary> --version`
  local minor p
  minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
  for p in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
    printf -- "-X %s.gitVersion=%s -X %s.gitMajor=1 -X %s.gitMinor=%s -X %s.gitTreeState=clean " \
      "$p" "$K8S_VERSION" "$p" "$p" "$minor" "$p"
  done
}
targets=(
  "etcd|etcd|go.etcd.io/etcd/server/v3|go.etcd.io/etcd/server/v3@$ETCD_VERSION|"
  "kube-apiserver|k8s|k8s.io/kubernetes/cmd/kube-apiserver|k8s.io/kubernetes@$K8S_VERSION|$(k8s_x)"
  "kube-controller-manager|k8s|k8s.io/kubernetes/cmd/kube-controller-manager|k8s.io/kubernetes@$K8S_VERSION|$(k8s_x)"
  "kube-scheduler|k8s|k8s.io/kubernetes/cmd/kube-scheduler|k8s.io/kubernetes@$K8S_VERSION|$(k8s_x)"
  "kubectl|k8s|k8s.io/kubernetes/cmd/kubectl|k8s.io/kubernetes@$K8S_VERSION|$(k8s_x)"
  "kwok|kwok|sigs.k8s.io/kwok/cmd/kwok|sigs.k8s.io/kwok@$KWOK_VERSION|-X sigs.k8s.io/kwok/pkg/consts.Version=${KWOK_VERSION#v}"
  "kwokctl|kwok|sigs.k8s.io/kwok/cmd/kwokctl|sigs.k8s.io/kwok@$KWOK_VERSION|-X sigs.k8s.io/kwok/pkg/consts.Version=${KWOK_VERSION#v}"
  "helm|helm|helm.sh/helm/v3/cmd/helm|helm.sh/helm/v3@$HELM_VERSION|-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  # The real node (test/harness/node.ts): built last, so a control-plane-only machine has its binaries first.
  "kubelet|k8s|k8s.io/kubernetes/cmd/kubelet|k8s.io/kubernetes@$K8S_VERSION|$(k8s_x)"
  "kube-proxy|k8s|k8s.io/kubernetes/cmd/kube-proxy|k8s.io/kubernetes@$K8S_VERSION|$(k8s_x)"
  "containerd|containerd|github.com/containerd/containerd/v2/cmd/containerd|github.com/containerd/containerd/v2@$CONTAINERD_VERSION|-X github.com/containerd/containerd/v2/version.Version=$CONTAINERD_VERSION"
  "containerd-shim-runc-v2|containerd|github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2|github.com/containerd/containerd/v2@$CONTAINERD_VERSION|-X github.com/containerd/containerd/v2/version.Version=$CONTAINERD_VERSION"
  "ctr|containerd|github.com/containerd/containerd/v2/cmd/ctr|github.com/containerd/containerd/v2@$CONTAINERD_VERSION|-X github.com/containerd/containerd/v2/version.Version=$CONTAINERD_VERSION"
  "coredns|coredns|github.com/coredns/coredns|github.com/coredns/coredns@$COREDNS_VERSION|"
  # the real node's sandbox binary (ours, no dependencies): pinned by its source's hash
  "pause|pause|rlkube/toolchain/kube/pause|rlkube/toolchain/kube/pause@$(sha256sum "$here/pause/main.go" | cut -c1-16)|"
)

# One build at a time per machine (setup may be started twice, e.g. by parallel shells).
exec 9>"$RLKUBE_HOME/.kube-install.lock"
if command -v flock >/dev/null; then flock 9; fi

rm -f "$bin"/.*.tmp.*   # left by a build that was killed (the lock says none is running now)
build_args=(-trimpath)
[[ -n "${RLKUBE_GO_BUILD_P:-}" ]] && build_args+=(-p "$RLKUBE_GO_BUILD_P")
total_start=$SECONDS
built=0
for t in "${targets[@]}"; do
  IFS='|' read -r name dir pkg pin xflags <<<"$t"
  stamp="$stamps/$name"
  if [[ -x "$bin/$name" && -f "$stamp" && "$(cat "$stamp")" == "$pin" ]]; then continue; fi
  echo "toolchain/kube: building $name ($pin)"
  start=$SECONDS
  tmp="$bin/.$name.tmp.$$"
  # shellcheck disable=SC2064
  trap "rm -f '$tmp'" EXIT
  (cd "$here/$dir" && CGO_ENABLED=0 go build "${build_args[@]}" -ldflags="-s -w $xflags" -o "$tmp" "$pkg")
  mv -f "$tmp" "$bin/$name"   # atomic: an interrupted build never leaves a half-written binary
  trap - EXIT
  echo "$pin" >"$stamp"
  built=$((built + 1))
  echo "toolchain/kube: built $name in $((SECONDS - start))s"
done
if ((built > 0)); then echo "toolchain/kube: built $built binaries in $((SECONDS - total_start))s"; fi
# Smoke check: kwokctl reads each component's version from `<binary> --version`.
if [[ "$("$bin/kube-apiserver" --version)" != *"$K8S_VERSION"* ]]; then
  echo "toolchain/kube: $bin/kube-apiserver does not report $K8S_VERSION; delete $stamps/kube-* and rerun" >&2
  exit 1
fi
echo "toolchain/kube: ready (kubernetes $K8S_VERSION, etcd $ETCD_VERSION, kwok $KWOK_VERSION, helm $HELM_VERSION, containerd $CONTAINERD_VERSION, coredns $COREDNS_VERSION) in $bin"
