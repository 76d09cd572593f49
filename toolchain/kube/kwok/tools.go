//go:build tools

// Package tools pins the programs that toolchain/kube/install.sh builds from this module (go build -o).
package tools

import (
	_ "sigs.k8s.io/kwok/cmd/kwok"
	_ "sigs.k8s.io/kwok/cmd/kwokctl"
)
