//go:build tools

// Package tools pins the program that toolchain/pulumi/install.sh builds from this module (go build -o).
package tools

import (
	_ "github.com/pulumi/pulumi-kubernetes/provider/v4/cmd/pulumi-resource-kubernetes"
)
