package configs

// Warnings are choices a valid configuration makes that weaken what
// gatehouse protects: `gatehouse check` prints them and `gatehouse run`
// logs them, so the operator who lowered a setting sees it every time.
func Warnings(c *Config) []string {
	var out []string
	switch c.TLS.MinVersion {
	case "1.0", "1.1":
		out = append(out, sprintf("tls.min_version: %q accepts TLS %s and the CBC suites with RSA key exchange it needs (no forward secrecy, deprecated by RFC 8996); keep it only while phones that speak no TLS 1.2 are in use", c.TLS.MinVersion, c.TLS.MinVersion))
	}
	return out
}
