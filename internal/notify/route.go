package notify

import (
	"path"
	"slices"
	"strings"
	"time"

	"github.com/pcwatch/pcwatch/internal/events"
	"github.com/pcwatch/pcwatch/internal/stream"
)

type compiledMatch struct {
	types          []string // globs on the short type
	customers      []string
	offers         []string // globs
	partnerIDs     []string
	minDelta       int
	remainingUnder time.Duration
	changed        *compiledChanged
}

type compiledChanged struct{ include, exclude []string }

// pointerMatches reports whether glob g matches JSON Pointer p or one of
// its ancestors.
func pointerMatches(g, p string) bool {
	for {
		if ok, _ := path.Match(g, p); ok {
			return true
		}
		i := strings.LastIndexByte(p, '/')
		if i <= 0 {
			return false
		}
		p = p[:i]
	}
}

// matches reports whether one of the changes is left after the exclusions
// and is included.
func (c *compiledChanged) matches(changes []events.Change) bool {
	for _, ch := range changes {
		if slices.ContainsFunc(c.exclude, func(g string) bool { return pointerMatches(g, ch.Path) }) {
			continue
		}
		if len(c.include) == 0 || slices.ContainsFunc(c.include, func(g string) bool { return pointerMatches(g, ch.Path) }) {
			return true
		}
	}
	return false
}

type compiledRoute struct {
	name     string
	m        compiledMatch
	channels []string
	cont     bool
	drop     bool
	// repeat is the route's repeat_interval; sendResolved its
	// send_resolved.
	repeat       time.Duration
	sendResolved bool
	// groupBy, groupWait and groupInterval: the route's grouping (none
	// when groupBy is empty).
	groupBy                  []string
	groupWait, groupInterval time.Duration
}

type compiledSilence struct {
	m           compiledMatch
	from, until time.Time // from: zero for the configuration's silences
	comment     string
	id          string // runtime silences only
}

func (s *compiledSilence) active(now time.Time) bool {
	return !now.Before(s.from) && now.Before(s.until)
}

type compiledOverride struct {
	glob        string
	title, text *templateT
}

func (m compiledMatch) empty() bool {
	return len(m.types) == 0 && len(m.customers) == 0 && len(m.offers) == 0 && len(m.partnerIDs) == 0 &&
		m.minDelta == 0 && m.remainingUnder == 0 && m.changed == nil
}

// shortType is the type without the io.pcwatch. prefix.
func shortType(t events.Type) string { return strings.TrimPrefix(string(t), events.TypePrefix) }

// matches reports whether the event satisfies every condition of m.
func (m compiledMatch) matches(ev *events.Event, d *events.Data) bool {
	if len(m.types) > 0 && !slices.ContainsFunc(m.types, func(g string) bool {
		ok, _ := path.Match(g, shortType(ev.Type))
		return ok
	}) {
		return false
	}
	if len(m.customers) > 0 && !slices.Contains(m.customers, d.CustomerID) {
		return false
	}
	if len(m.offers) > 0 {
		var names []string
		for _, v := range []*events.View{d.After, d.Before} {
			if v != nil && v.OfferName != "" {
				names = append(names, v.OfferName)
			}
		}
		if !slices.ContainsFunc(m.offers, func(g string) bool {
			return slices.ContainsFunc(names, func(n string) bool { ok, _ := path.Match(g, n); return ok })
		}) {
			return false
		}
	}
	if len(m.partnerIDs) > 0 {
		var ids []string
		for _, v := range []*events.View{d.After, d.Before} {
			if v != nil && v.PartnerID != "" {
				ids = append(ids, v.PartnerID)
			}
		}
		if !slices.ContainsFunc(m.partnerIDs, func(p string) bool { return slices.Contains(ids, p) }) {
			return false
		}
	}
	if m.minDelta > 0 {
		if d.Delta == nil || abs(*d.Delta) < m.minDelta {
			return false
		}
	}
	if m.changed != nil && !m.changed.matches(d.Changes) {
		return false
	}
	if m.remainingUnder > 0 {
		left, ok := remaining(ev, d)
		if !ok || left >= m.remainingUnder {
			return false
		}
	}
	return true
}

// remaining is the time left before a deadline event's deadline, as the
// watcher computed it, or else as of the event time.
func remaining(ev *events.Event, d *events.Data) (time.Duration, bool) {
	if d.RemainingSeconds != nil {
		return time.Duration(*d.RemainingSeconds) * time.Second, true
	}
	if d.Deadline != nil {
		return d.Deadline.Sub(ev.Time), true
	}
	return 0, false
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}

// Decision is where one event goes.
type Decision struct {
	// Channels receive the event, in the order routes name them, each once.
	Channels []string
	// Routes are the names of the routes that matched; "default" when the
	// default route applied.
	Routes []string
	// Silenced is set when an active silence matched; Channels is then
	// empty, Silence holds the silence's comment and SilenceEnd when it
	// ends (the latest end of the active silences that match).
	Silenced   bool
	Silence    string
	SilenceEnd time.Time
	// Dropped is set when the walk ended at a drop route (the last of
	// Routes): the event goes to no further route and not to the default
	// route; Channels holds only what earlier routes with continue added.
	Dropped bool
}

// Route decides which channels receive an event at instant now (which only
// matters for silences): routes are tried in order, each matching route adds
// its channels and ends the walk unless it has continue: true; when none
// matched the default route applies. An active silence that matches mutes
// the event everywhere.
func (c *Config) Route(ev *events.Event, d *events.Data, now time.Time) Decision {
	var dec Decision
	check := func(l []compiledSilence) {
		for i := range l {
			s := &l[i]
			if !s.active(now) || !s.m.matches(ev, d) {
				continue
			}
			if !dec.Silenced {
				dec.Silenced, dec.Silence = true, s.comment
				if dec.Silence == "" {
					dec.Silence = "silenced until " + s.until.UTC().Format(time.RFC3339)
				}
			}
			if s.until.After(dec.SilenceEnd) {
				dec.SilenceEnd = s.until
			}
		}
	}
	check(c.silences)
	if rt := c.runtime.Load(); rt != nil {
		check(*rt)
	}
	if dec.Silenced {
		return dec
	}
	return c.walk(ev, d)
}

// walk is Route without the silences.
func (c *Config) walk(ev *events.Event, d *events.Data) Decision {
	var dec Decision
	add := func(chs []string) {
		for _, ch := range chs {
			if !slices.Contains(dec.Channels, ch) {
				dec.Channels = append(dec.Channels, ch)
			}
		}
	}
	for _, r := range c.routes {
		if !r.m.matches(ev, d) {
			continue
		}
		dec.Routes = append(dec.Routes, r.name)
		if r.drop {
			dec.Dropped = true
			break
		}
		add(r.channels)
		if !r.cont {
			break
		}
	}
	if len(dec.Routes) == 0 && len(c.deflt) > 0 {
		dec.Routes = []string{"default"}
		add(c.deflt)
	}
	return dec
}

// FilterSubjects returns the NATS subjects a channel's consumer must see:
// the subjects of the event types its routes name (a type glob on the
// change becomes pcwatch.events.<resource>.>, a glob on the resource
// pcwatch.events.>, ops types pcwatch.ops.>), or everything when the
// channel is on the default route or on a route without types. The subjects
// never overlap, as JetStream requires.
func (c *Config) FilterSubjects(channel string) []string {
	var subs []string
	all := func() []string { return slices.Clone(stream.Subjects) }
	for _, r := range c.routes {
		if !slices.Contains(r.channels, channel) {
			continue
		}
		if len(r.m.types) == 0 {
			return all()
		}
		for _, g := range r.m.types {
			subs = append(subs, subjectsForGlob(g)...)
		}
	}
	if slices.Contains(c.deflt, channel) {
		return all()
	}
	if len(subs) > 0 && c.remindsOn(channel) {
		for _, t := range resolverTypes {
			subs = append(subs, subjectsForGlob(shortType(t))...)
		}
	}
	return reduceSubjects(subs)
}

func hasMeta(s string) bool { return strings.ContainsAny(s, `*?[\`) }

func subjectsForGlob(g string) []string {
	res, change, dot := strings.Cut(g, ".")
	if dot && !hasMeta(res) {
		if !hasMeta(change) {
			if res == string(events.ResourceOps) {
				return []string{"pcwatch.ops." + change}
			}
			return []string{"pcwatch.events." + res + "." + change + ".>"}
		}
		if res == string(events.ResourceOps) {
			return []string{"pcwatch.ops.>"}
		}
		return []string{"pcwatch.events." + res + ".>"}
	}
	// A glob over the resource: the event space of every resource it can
	// match.
	var out []string
	for _, in := range events.Catalog() {
		if ok, _ := path.Match(g, shortType(in.Type)); !ok {
			continue
		}
		s := "pcwatch.events.>"
		if in.Resource == events.ResourceOps {
			s = "pcwatch.ops.>"
		}
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// reduceSubjects drops duplicates and subjects another one covers.
func reduceSubjects(subs []string) []string {
	slices.Sort(subs)
	subs = slices.Compact(subs)
	var out []string
	for i, s := range subs {
		covered := false
		for j, t := range subs {
			if i != j && subjectCovers(t, s) {
				covered = true
				break
			}
		}
		if !covered {
			out = append(out, s)
		}
	}
	return out
}

// subjectCovers reports whether filter t matches every subject filter s
// matches.
func subjectCovers(t, s string) bool {
	tt, st := strings.Split(t, "."), strings.Split(s, ".")
	for i, tok := range tt {
		if tok == ">" {
			return len(st) > i
		}
		if i >= len(st) {
			return false
		}
		switch {
		case tok == "*":
			if st[i] == ">" {
				return false
			}
		case tok != st[i]:
			return false
		}
	}
	return len(tt) == len(st)
}

// routeOptions is what the routes that send an event to one channel say
// about its follow-ups.
type routeOptions struct {
	routed                   bool // the routes send the event to the channel
	route                    string
	repeat                   time.Duration
	sendResolved             bool
	groupBy                  []string
	groupWait, groupInterval time.Duration
}

// routeOptions walks the routes as Route does, ignoring silences, and
// returns the options of the first route that sends the event to channel
// (the default route: no reminders, resolved notices on).
func (c *Config) routeOptions(ev *events.Event, d *events.Data, channel string) routeOptions {
	matched := false
	for _, r := range c.routes {
		if !r.m.matches(ev, d) {
			continue
		}
		matched = true
		if r.drop {
			return routeOptions{}
		}
		if slices.Contains(r.channels, channel) {
			return routeOptions{routed: true, route: r.name, repeat: r.repeat, sendResolved: r.sendResolved,
				groupBy: r.groupBy, groupWait: r.groupWait, groupInterval: r.groupInterval}
		}
		if !r.cont {
			return routeOptions{}
		}
	}
	if !matched && slices.Contains(c.deflt, channel) {
		return routeOptions{routed: true, route: "default", sendResolved: true}
	}
	return routeOptions{}
}

// remindsOn says whether some route repeats warnings on channel: its
// consumer then also reads the events that resolve them.
func (c *Config) remindsOn(channel string) bool {
	for _, r := range c.routes {
		if r.repeat > 0 && slices.Contains(r.channels, channel) {
			return true
		}
	}
	return false
}

// routeMayOpenAlerts says whether the route can match a deadline warning.
func routeMayOpenAlerts(r compiledRoute) bool {
	if len(r.m.types) == 0 {
		return true
	}
	for _, f := range alertFamilies {
		for _, g := range r.m.types {
			if ok, _ := path.Match(g, shortType(f.closing)); ok {
				return true
			}
		}
	}
	return false
}

func warningTypeNames() []string {
	var out []string
	for _, f := range alertFamilies {
		out = append(out, shortType(f.closing))
	}
	return out
}
