package prune

import (
	"slices"
	"testing"
	"time"

	"github.com/pgfbb/pgfbb-wrap/staged"
)

func TestDecide(t *testing.T) {
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	day := func(n int) time.Time { return now.Add(-time.Duration(n) * 24 * time.Hour) }
	a, b := &staged.Manifest{SystemIdentifier: "1"}, &staged.Manifest{SystemIdentifier: "2"}
	entries := []staged.Entry{
		{Label: "forged", State: staged.StateComplete, Time: day(-1000), Manifest: a},
		{Label: "running", State: staged.StateRunning, Time: day(0)},
		{Label: "d1", State: staged.StateComplete, Time: day(1), Manifest: a},
		{Label: "partial", State: staged.StatePartial, Time: day(1)},
		{Label: "d2", State: staged.StateComplete, Time: day(2), Manifest: a},
		{Label: "damaged", State: staged.StateDamaged, Time: day(3)},
		{Label: "other", State: staged.StateComplete, Time: day(4), Manifest: b},
		{Label: "d5", State: staged.StateComplete, Time: day(5), Manifest: a},
		{Label: "d9", State: staged.StateComplete, Time: day(9), Manifest: a},
	}
	tests := []struct {
		name       string
		policy     Policy
		keep, drop []string
	}{
		{"nothing asked: the newest of each cluster stays", Policy{}, []string{"forged", "d1", "other"}, []string{"d2", "d5", "d9"}},
		{"keep last 2", Policy{KeepLast: 2}, []string{"forged", "d1", "d2", "other"}, []string{"d5", "d9"}},
		{"keep within 3 days", Policy{KeepWithin: 72 * time.Hour}, []string{"forged", "d1", "d2", "other"}, []string{"d5", "d9"}},
		{"either rule keeps", Policy{KeepLast: 3, KeepWithin: 36 * time.Hour}, []string{"forged", "d1", "d2", "other", "d5"}, []string{"d9"}},
		{"keep more than there are", Policy{KeepLast: 10}, []string{"forged", "d1", "d2", "other", "d5", "d9"}, nil},
		{"the run's own backup stays, and counts", Policy{KeepLast: 2, Protect: "d9"}, []string{"forged", "d1", "d2", "other", "d9"}, []string{"d5"}},
	}
	labels := func(es []staged.Entry) []string {
		var out []string
		for _, e := range es {
			out = append(out, e.Label)
		}
		return out
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keep, drop := tt.policy.Decide(entries, now)
			if !slices.Equal(labels(keep), tt.keep) || !slices.Equal(labels(drop), tt.drop) {
				t.Fatalf("keep %v drop %v, want %v and %v", labels(keep), labels(drop), tt.keep, tt.drop)
			}
		})
	}
}
