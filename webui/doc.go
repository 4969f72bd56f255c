// Package webui is gatehouse's admin interface: a web UI for an
// administrator's browser and a JSON API for scripts, served over TLS on
// admin.listen only, never on a service port.
//
// It sits beside the data path and changes it only through the parts that
// own the state: proxy.Server (connections, counters), blacklist.List
// (entries, whitelist) and the reload function the command hands it, the
// same one SIGHUP calls, so a configuration applied here takes the same path
// as one applied by signal and never drops established connections.
//
// Pages are Go templates rendered on the server; a little plain JavaScript
// (static/app.js) refreshes the live parts of a page by fetching it again.
// Templates, styles and script are embedded in the binary. Every endpoint is
// described in README.md.
//
// Security: logins are checked against admin.users (bcrypt); a login gets a
// session cookie (Secure, HttpOnly, SameSite=Strict, fixed expiry) and a
// CSRF token that every state-changing request must carry. The API also
// takes HTTP Basic credentials, which a browser cannot send cross-site
// without the API's content types forcing a preflight. Failed logins are
// reported to the blacklist like any suspicious request, and blocked
// clients are closed at accept, as on the service ports.
package webui
