//go:build tools

// The command cluster/build.sh builds from this module.
package tools

import _ "github.com/cloudnativelabs/kube-router/v2/cmd/kube-router"
