// Command etcd is the upstream etcd server, built from the Go module proxy.
//
// `go install go.etcd.io/etcd/server/v3@vX` is not possible (the etcd module
// carries replace directives), so this tiny main calls etcdmain directly.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
