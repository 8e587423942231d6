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
	entries := []staged.Entry{
		{Label: "running", State: staged.StateRunning, Time: day(0)},
		{Label: "d1", State: staged.StateComplete, Time: day(1)},
		{Label: "partial", State: staged.StatePartial, Time: day(1)},
		{Label: "d2", State: staged.StateComplete, Time: day(2)},
		{Label: "damaged", State: staged.StateDamaged, Time: day(3)},
		{Label: "d5", State: staged.StateComplete, Time: day(5)},
		{Label: "d9", State: staged.StateComplete, Time: day(9)},
	}
	tests := []struct {
		name       string
		policy     Policy
		keep, drop []string
	}{
		{"nothing asked: the newest stays", Policy{}, []string{"d1"}, []string{"d2", "d5", "d9"}},
		{"keep last 2", Policy{KeepLast: 2}, []string{"d1", "d2"}, []string{"d5", "d9"}},
		{"keep within 3 days", Policy{KeepWithin: 72 * time.Hour}, []string{"d1", "d2"}, []string{"d5", "d9"}},
		{"either rule keeps", Policy{KeepLast: 3, KeepWithin: 36 * time.Hour}, []string{"d1", "d2", "d5"}, []string{"d9"}},
		{"keep more than there are", Policy{KeepLast: 10}, []string{"d1", "d2", "d5", "d9"}, nil},
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
