//go:build tools

// Package tools pins CoreDNS (the test cluster's DNS for pods on the real node), which
// toolchain/kube/install.sh builds; the blank import keeps it in go.mod and go.sum.
package tools

import _ "github.com/coredns/coredns"
