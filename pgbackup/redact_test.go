package pgbackup

import (
	"strings"
	"testing"
)

func TestRedact(t *testing.T) {
	tests := []struct {
		dsn, text string
	}{
		{"postgres://u:S3cretPW@[::1", `parse "postgres://u:S3cretPW@[::1": missing ']' in host`},
		{"postgresql://u:S3cretPW@db/x?sslmode=require", "postgresql://u:S3cretPW@db/x"},
		{"postgres://u:S3cret%40PW@db/x", "user u with S3cret@PW and S3cret%40PW"},
		{"postgres://db/x?password=S3cretPW&sslmode=disable", "?password=S3cretPW&sslmode=disable"},
		{"host=db password=S3cretPW user=u", "bad conninfo host=db password=S3cretPW user=u"},
		{"host=db password = 'S3cret PW' user=u", "password = 'S3cret PW' and S3cret PW"},
		{`host=db password='S3cret\'PW'`, `S3cret'PW and password='S3cret\'PW'`},
		{"host=db PASSWORD=S3cretPW", "PASSWORD=S3cretPW"},
	}
	for _, tt := range tests {
		t.Run(tt.dsn, func(t *testing.T) {
			got := Redact(tt.text, tt.dsn)
			for _, secret := range []string{"S3cret", "PW'"} {
				if strings.Contains(got, secret) {
					t.Errorf("Redact(%q) = %q: %q remains", tt.text, got, secret)
				}
			}
			if len(Passwords(tt.dsn)) == 0 {
				t.Errorf("Passwords(%q) found none", tt.dsn)
			}
		})
	}
	for _, dsn := range []string{"", "mydb", "host=db user=u", "postgres://u@db/x", "postgres://db:5432/x"} {
		if pw := Passwords(dsn); len(pw) != 0 {
			t.Errorf("Passwords(%q) = %q, want none", dsn, pw)
		}
	}
}
