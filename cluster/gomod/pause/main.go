// pause: the process that holds a pod's namespaces. It sleeps until SIGTERM
// or SIGINT and reaps zombies (it is PID 1 when the pod shares its PID
// namespace). Kubernetes' own pause is C; a static Go binary needs no
// toolchain beyond the one that builds the rest of the cluster.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sig := make(chan os.Signal, 4)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for s := range sig {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var ws syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
