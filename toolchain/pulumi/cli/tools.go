//go:build tools

// Package tools pins the program that toolchain/pulumi/install.sh builds from this module (go build -o).
package tools

import (
	_ "github.com/pulumi/pulumi/pkg/v3/cmd/pulumi"
)
