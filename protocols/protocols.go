// Package protocols holds one sub-package per protocol gatehouse routes, and
// Handlers, which plugs them into the proxy's listener layer by service type.
// Adding a protocol means a new sub-package and a line here; the listener
// code does not change.
package protocols

import (
	"log/slog"

	"github.com/gatehouse-pbx/gatehouse/protocols/http"
	"github.com/gatehouse-pbx/gatehouse/proxy"
)

// Handlers returns the handler of every service type gatehouse knows.
func Handlers(logger *slog.Logger) map[string]proxy.Handler {
	web := http.New(logger)
	return map[string]proxy.Handler{
		"http":  web,
		"https": web,
	}
}
