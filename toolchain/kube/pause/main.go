// Command pause is the sandbox ("pause") container of the test cluster's real node: it holds a pod's
// namespaces and exits on SIGINT/SIGTERM. Built here (a static binary in a scratch image made by
// test/harness/images.ts) because the test cluster pulls nothing from a registry; it does what
// registry.k8s.io/pause does, reaping the orphans that PID 1 inherits.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range sigs {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		for { // reap every exited child; stop when none is left to wait for
			var ws syscall.WaitStatus
			if pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil); pid <= 0 || err != nil {
				break
			}
		}
	}
}
