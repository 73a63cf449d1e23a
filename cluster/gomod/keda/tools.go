//go:build tools

// The packages cluster/build-go.sh builds from this module: KEDA's operator
// (cmd/operator, the image's /keda) and its metrics apiserver (cmd/adapter,
// the image's /keda-adapter). The build tag keeps `go build ./...` away.
package tools

import (
	_ "github.com/kedacore/keda/v2/cmd/adapter"
	_ "github.com/kedacore/keda/v2/cmd/operator"
)
