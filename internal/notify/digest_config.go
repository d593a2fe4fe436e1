package notify

import (
	"fmt"
	"path"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/pcwatch/pcwatch/internal/deadlinequery"
	"github.com/pcwatch/pcwatch/internal/events"
)

// Digest defaults and bounds.
const (
	DefaultDigestWithin  = 7 * 24 * time.Hour
	DefaultDigestMaxRows = 50
	MaxDigestRows        = 200
	DefaultDigestGrace   = time.Hour
)

// Digest is a scheduled summary of the watcher's open deadlines: at every
// instant of Schedule in TimeZone, the notifier asks the watcher what
// closes within Within (and passes Match) and sends one message per channel.
type Digest struct {
	// Name names the digest in logs, metrics, message ids and its
	// delivery records: letters, digits, '-' and '_'.
	Name string `yaml:"name"`
	// Schedule is a cron expression of five fields (minute hour
	// day-of-month month day-of-week, e.g. "0 8 * * 1-5": weekdays at
	// 08:00) or a descriptor (@daily, @weekly, @monthly, @hourly).
	Schedule string `yaml:"schedule"`
	// TimeZone is the IANA zone the schedule is read in, e.g.
	// Europe/Paris; default UTC.
	TimeZone string `yaml:"time_zone"`
	// Within is how far ahead the digest looks: what closes in the next
	// Within. Default 7d.
	Within Duration `yaml:"within"`
	// Match selects deadlines: types (deadline event types, e.g.
	// "subscription.refund-window-closing"), customers, offers,
	// partner_ids. The other conditions of a route's match are not
	// conditions of a deadline.
	Match Match `yaml:"match"`
	// Channels receive the digest.
	Channels []string `yaml:"channels"`
	// SkipEmpty sends nothing when nothing closes in the window (default:
	// a message saying so).
	SkipEmpty bool `yaml:"skip_empty"`
	// MaxRows bounds the rows shown (default 50, at most 200); the rest
	// are counted ("and N more").
	MaxRows int `yaml:"max_rows"`
	// Grace is how late a run may still be sent: a notifier that was down
	// at the scheduled instant sends it when it starts within Grace, and
	// skips it (logged) after. Default 1h.
	Grace Duration `yaml:"grace"`
}

// compiledDigest is a validated Digest.
type compiledDigest struct {
	name      string
	spec      string
	sched     cron.Schedule
	loc       *time.Location
	within    time.Duration
	types     []string // globs on the short deadline type
	customers []string
	partners  []string
	offers    []string
	channels  []string
	skipEmpty bool
	maxRows   int
	grace     time.Duration
}

var digestNameRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// cronParser reads five-field expressions and descriptors. Seconds are
// not offered (a digest a second is not a digest), nor @every, which is
// not tied to the calendar and so has no stable instants to deduplicate
// on.
var cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// parseSchedule parses a digest's schedule in loc.
func parseSchedule(spec string, loc *time.Location) (cron.Schedule, error) {
	s := strings.TrimSpace(spec)
	if strings.HasPrefix(s, "CRON_TZ=") || strings.HasPrefix(s, "TZ=") {
		return nil, fmt.Errorf("%q names its time zone inside the expression: set time_zone instead", spec)
	}
	if strings.HasPrefix(s, "@every") {
		return nil, fmt.Errorf("%q is an interval, not a calendar schedule: write it as a cron expression, e.g. \"0 */6 * * *\"", spec)
	}
	sched, err := cronParser.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("%q is not a cron expression (minute hour day-of-month month day-of-week, e.g. \"0 8 * * 1-5\", or @daily): %v", spec, err)
	}
	ss, ok := sched.(*cron.SpecSchedule)
	if !ok {
		return nil, fmt.Errorf("%q is not a calendar schedule", spec)
	}
	ss.Location = loc
	return ss, nil
}

// deadlineTypes are the short types of the catalog's deadline events.
func deadlineTypes() []string {
	var out []string
	for _, in := range events.Catalog() {
		if in.Deadline {
			out = append(out, shortType(in.Type))
		}
	}
	return out
}

// digests checks the digests, marking the channels they use in used.
func (v *validator) digests(used map[string]bool) error {
	c := v.cfg
	seen := map[string]bool{}
	for i, d := range c.Digests {
		p := fmt.Sprintf("digests[%d]", i)
		if d.Name == "" {
			return v.errf(p+".name", "missing: name the digest (letters, digits, '-' and '_'), e.g. weekday-morning")
		}
		if !digestNameRE.MatchString(d.Name) {
			return v.errf(p+".name", "bad digest name %q: use letters, digits, '-' and '_' (at most 64; it names the digest's delivery records)", d.Name)
		}
		if seen[d.Name] {
			return v.errf(p+".name", "a second digest named %q: names must be unique (they key the digests' delivery records)", d.Name)
		}
		seen[d.Name] = true
		cd := &compiledDigest{name: d.Name, spec: d.Schedule, skipEmpty: d.SkipEmpty, channels: d.Channels}

		tz := d.TimeZone
		if tz == "" {
			tz = "UTC"
		}
		loc, err := time.LoadLocation(tz)
		if err != nil || strings.EqualFold(tz, "local") {
			return v.errf(p+".time_zone", "unknown time zone %q: write an IANA name such as Europe/Paris, America/New_York or UTC", d.TimeZone)
		}
		cd.loc = loc
		if strings.TrimSpace(d.Schedule) == "" {
			return v.errf(p+".schedule", `missing: a cron expression (minute hour day-of-month month day-of-week), e.g. "0 8 * * 1-5" for weekdays at 08:00`)
		}
		if cd.sched, err = parseSchedule(d.Schedule, loc); err != nil {
			return v.errf(p+".schedule", "%v", err)
		}

		cd.within = d.Within.D()
		switch {
		case d.Within == 0:
			cd.within = DefaultDigestWithin
		case d.Within < 0 || cd.within > deadlinequery.MaxWithin:
			return v.errf(p+".within", "want a positive duration of at most %s (what closes in the next N, e.g. 7d), got %s", humanDuration(deadlinequery.MaxWithin), d.Within.D())
		case cd.within < time.Minute:
			return v.errf(p+".within", "%s is shorter than a minute: the window is what closes in the next N, e.g. 7d", d.Within.D())
		}
		cd.maxRows = d.MaxRows
		switch {
		case d.MaxRows == 0:
			cd.maxRows = DefaultDigestMaxRows
		case d.MaxRows < 1 || d.MaxRows > MaxDigestRows:
			return v.errf(p+".max_rows", "want 1 to %d (the rows a message shows; the rest are counted), got %d", MaxDigestRows, d.MaxRows)
		}
		cd.grace = d.Grace.D()
		switch {
		case d.Grace == 0:
			cd.grace = DefaultDigestGrace
		case d.Grace < 0:
			return v.errf(p+".grace", "must be positive (how late a missed run may still be sent, e.g. 1h)")
		case cd.grace > c.Delivery.DedupeTTL.D()/2:
			return v.errf(p+".grace", "%s is more than half of delivery.dedupe_ttl %s, which is how long sent digests are remembered: lower grace or raise dedupe_ttl", cd.grace, c.Delivery.DedupeTTL.D())
		}

		mp := p + ".match"
		m := d.Match
		switch {
		case m.MinQuantityDelta != 0:
			return v.errf(mp+".min_quantity_delta", "not a condition of a digest: it lists open deadlines (match on types, customers, offers, partner_ids)")
		case m.RemainingUnder != 0:
			return v.errf(mp+".remaining_under", "not a condition of a digest: its window is within (what closes in the next N)")
		case m.Changed != nil:
			return v.errf(mp+".changed", "not a condition of a digest: it lists open deadlines (match on types, customers, offers, partner_ids)")
		}
		if _, err := v.match(mp, m); err != nil {
			return err
		}
		dts := deadlineTypes()
		for j, t := range m.Types {
			g := strings.TrimPrefix(t, events.TypePrefix)
			if !slices.ContainsFunc(dts, func(dt string) bool { ok, _ := path.Match(g, dt); return ok }) {
				return v.errf(fmt.Sprintf("%s.types[%d]", mp, j), "%q matches no deadline type: a digest lists deadlines (%s)", t, strings.Join(dts, ", "))
			}
			cd.types = append(cd.types, g)
		}
		cd.customers, cd.partners, cd.offers = m.Customers, m.PartnerIDs, m.Offers
		for _, l := range [][]string{m.Customers, m.PartnerIDs, m.Offers, m.Types} {
			if len(l) > deadlinequery.MaxFilterValues {
				return v.errf(mp, "more than %d values in one condition", deadlinequery.MaxFilterValues)
			}
		}

		if len(d.Channels) == 0 {
			return v.errf(p+".channels", "no channels: name at least one of %s", strings.Join(c.names, ", "))
		}
		for j, n := range d.Channels {
			ch, ok := c.Channels[n]
			if !ok {
				return v.errf(fmt.Sprintf("%s.channels[%d]", p, j), "no channel named %q (defined: %s)", n, strings.Join(c.names, ", "))
			}
			if slices.Index(d.Channels, n) != j {
				return v.errf(fmt.Sprintf("%s.channels[%d]", p, j), "channel %q is named twice", n)
			}
			used[n] = true
			if ch.Kind == KindNATS {
				if _, err := ch.execSubject(digestTemplateData(d.Name, n)); err != nil {
					return v.errf(keyPath("channels", n)+".subject", "for digest %s: %v", d.Name, err)
				}
			}
		}
		c.digests = append(c.digests, cd)
	}
	return nil
}

// digestTemplateData is what a nats channel's subject template sees for a
// digest: Type "notifier.digest", Channel, and the digest's name as
// Product; the event fields are empty.
func digestTemplateData(name, channel string) *TemplateData {
	return &TemplateData{Type: DigestType, Channel: channel, Product: name, Title: "digest " + name}
}

// DigestType is the Type a digest has in subject templates, the
// X-Pcwatch-Event-Type of a webhook digest and the type member of its
// JSON body. It is not a CloudEvent type of the catalog: digests are the
// notifier's messages, not the watcher's events.
const DigestType = "notifier.digest"
