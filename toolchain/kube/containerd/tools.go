//go:build tools

// Package tools pins containerd (the real node's container runtime, CRI plugin built in) and its runc shim,
// which toolchain/kube/install.sh builds; the blank imports keep them in go.mod and go.sum.
package tools

import (
	_ "github.com/containerd/containerd/v2/cmd/containerd"
	_ "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2"
	_ "github.com/containerd/containerd/v2/cmd/ctr"
)
