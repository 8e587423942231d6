package pgbackup

import (
	"net/url"
	"regexp"
	"strings"
)

// Where a connection string can hold a password: a URL's user information
// (postgres://user:PASSWORD@host), a URL parameter (?password=PASSWORD)
// and a conninfo keyword (password=PASSWORD or password='PASS WORD').
var (
	urlUserinfo  = regexp.MustCompile(`(?i)(postgres(?:ql)?://[^:@/?\s]*:)([^@\s]*)@`)
	urlParameter = regexp.MustCompile(`(?i)([?&]password=)([^&#\s]*)`)
	conninfoPW   = regexp.MustCompile(`(?i)(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'?|[^\s']*)`)
)

const redacted = "xxxxx"

// Passwords returns the passwords a connection string holds, as written
// and decoded, so that they can be removed from any text.
func Passwords(dsn string) []string {
	var out []string
	for _, re := range []*regexp.Regexp{urlUserinfo, urlParameter, conninfoPW} {
		for _, m := range re.FindAllStringSubmatch(dsn, -1) {
			pw := strings.Trim(m[2], "'")
			if pw == "" {
				continue
			}
			out = append(out, pw)
			if dec, err := url.PathUnescape(pw); err == nil && dec != pw {
				out = append(out, dec)
			}
			if unq := strings.NewReplacer(`\'`, `'`, `\\`, `\`).Replace(pw); unq != pw {
				out = append(out, unq)
			}
		}
	}
	return out
}

// Redact removes from text every password of dsn, and whatever stands where
// a connection string keeps its password.
func Redact(text, dsn string) string {
	for _, pw := range Passwords(dsn) {
		text = strings.ReplaceAll(text, pw, redacted)
	}
	text = urlUserinfo.ReplaceAllString(text, "${1}"+redacted+"@")
	text = urlParameter.ReplaceAllString(text, "${1}"+redacted)
	return conninfoPW.ReplaceAllString(text, "${1}"+redacted)
}
