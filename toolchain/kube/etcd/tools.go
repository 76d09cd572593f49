//go:build tools

// Package tools pins the programs that toolchain/kube/install.sh builds from this module (go build -o).
package tools

import (
	_ "go.etcd.io/etcd/server/v3"
)
