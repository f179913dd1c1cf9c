//go:build tools

// Package tools records the controller's main package as a dependency of
// this module, so that go.mod and go.sum pin everything it is built from.
package tools

import _ "github.com/fluxcd/notification-controller"
