package pgformat

// Major is what differs between PostgreSQL majors in the files this tool
// reads and writes. What differs in the server's SQL interface is in
// pgbackup's table.
type Major struct {
	Num       int    // 10, 11, ...
	PageMagic uint16 // XLOG_PAGE_MAGIC, as read from each major's WAL
	// RecoveryConf: recovery settings go in recovery.conf (10, 11), which
	// 12 replaced with recovery.signal and the settings in the server's
	// configuration.
	RecoveryConf bool
	// DefaultTimeline is the timeline recovery follows unless told:
	// current up to 11, which do not know the word, latest from 12.
	DefaultTimeline string
}

// majors has one row per major this tool has been tested with.
var majors = []Major{
	{Num: 10, PageMagic: 0xD097, RecoveryConf: true, DefaultTimeline: "current"},
	{Num: 11, PageMagic: 0xD098, RecoveryConf: true, DefaultTimeline: "current"},
	{Num: 12, PageMagic: 0xD101, DefaultTimeline: "latest"},
	{Num: 13, PageMagic: 0xD106, DefaultTimeline: "latest"},
	{Num: 14, PageMagic: 0xD10D, DefaultTimeline: "latest"},
	{Num: 15, PageMagic: 0xD110, DefaultTimeline: "latest"},
	{Num: 16, PageMagic: 0xD113, DefaultTimeline: "latest"},
	{Num: 17, PageMagic: 0xD116, DefaultTimeline: "latest"},
	{Num: 18, PageMagic: 0xD118, DefaultTimeline: "latest"},
}

// MajorOf is the major of a server_version_num (150004 is 15).
func MajorOf(versionNum int) int { return versionNum / 10000 }

// LookupMajor returns the formats of a major; ok is false for one this
// tool has no row for.
func LookupMajor(major int) (m Major, ok bool) {
	for _, m := range majors {
		if m.Num == major {
			return m, true
		}
	}
	return Major{Num: major}, false
}
