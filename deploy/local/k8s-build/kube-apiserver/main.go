// Command kube-apiserver is the upstream Kubernetes API server, built from the Go module proxy.
//
// It is a copy of k8s.io/kubernetes/cmd/kube-apiserver/apiserver.go: that
// package is a `main`, so it cannot be imported; app.NewAPIServerCommand can.
package main

import (
	"os"
	_ "time/tzdata" // for timeZone support in CronJob

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"          // for JSON log format registration
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // load all the prometheus client-go plugins
	_ "k8s.io/component-base/metrics/prometheus/version"  // for version metric registration
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	command := app.NewAPIServerCommand()
	code := cli.Run(command)
	os.Exit(code)
}
