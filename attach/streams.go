package attach

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// The streams. Two sets of outbound subjects are kept apart: what reporting reads (updates and
// lifecycle events, kept for long in CC_COBROWSE) and the page messages (which may carry
// credentials, kept briefly in CC_HANDOFF). For each set the rule is the previous release's: a
// stream is created only when no stream captures any of the set's subjects, an existing one is used
// as it is, and anything in between is refused.
//
// One exception, the migration from the previous release, whose CC_COBROWSE captured the agent's
// page subject too: a stream the daemon created that holds a page subject beside the reporting
// ones is updated to drop it (the messages it stores stay there) before the page stream is made.
// An operator's stream that does the same is refused: the daemon does not change it.

// Metadata keys of every stream the daemon creates (and of the one it migrates).
const (
	// MetaCreated marks a stream the daemon created: "1". The daemon changes no stream without it
	// (bar the previous release's, recognized by its description, see legacyDescription).
	MetaCreated = "cobrowse-connector.created"
	// MetaContract is the contract version (ContractVersion) the stream was created or last
	// migrated for, in decimal.
	MetaContract = "cobrowse-connector.contract"
)

// legacyDescription is the description the previous release gave the outbound stream it created,
// which captured the updates, the lifecycle events and the agent views, with no metadata. A stream
// with exactly this description is taken for one the daemon created.
const legacyDescription = "cobrowse-connector outbound: attached-data updates, co-browse lifecycle events, agent views"

// The descriptions of the streams this release creates.
const (
	reportingDescription = "cobrowse-connector outbound for reporting: attached-data updates, co-browse lifecycle events"
	handoffDescription   = "cobrowse-connector page messages (handoffs) to agents and customers; may carry credentials, kept briefly"
)

// createdByDaemon reports whether the stream was created by the daemon: this release's marker, or
// the previous release's description.
func createdByDaemon(cfg jetstream.StreamConfig) bool {
	return cfg.Metadata[MetaCreated] != "" || cfg.Description == legacyDescription
}

// marker is the metadata of a stream the daemon creates or migrates.
func marker() map[string]string {
	return map[string]string{MetaCreated: "1", MetaContract: strconv.Itoa(ContractVersion)}
}

// streamSet is one set of outbound subjects and the stream created for it when none captures it.
type streamSet struct {
	what        string   // "reporting", "page": for logs and errors
	patterns    []string // the subjects the set's stream(s) must capture
	create      string   // the stream to create
	description string
	maxAge      time.Duration
	duplicates  time.Duration
}

func (p *Publisher) sets() (reporting, page streamSet) {
	reporting = streamSet{
		what: "reporting", patterns: reportingSubjects(p.cfg.Prefix), create: p.cfg.Stream,
		description: reportingDescription, maxAge: p.cfg.MaxAge, duplicates: p.cfg.DuplicateWindow,
	}
	page = streamSet{
		what: "page", patterns: pageSubjects(p.cfg.Prefix), create: p.cfg.HandoffStream,
		description: handoffDescription, maxAge: p.cfg.HandoffMaxAge, duplicates: p.cfg.HandoffDuplicateWindow,
	}
	return reporting, page
}

// ensureStreams separates the page subjects from the reporting ones where the previous release
// kept them together, then finds or creates the streams of each set. Everything is checked before
// anything is changed: a refused start leaves the streams as they were.
func (p *Publisher) ensureStreams(ctx context.Context) error {
	// Another daemon starting at the same time may be migrating or creating the streams between
	// this one's look-ups, which then see half of its work: a refusal is checked again, twice,
	// before it stands (a layout that is really wrong stays wrong).
	var pl plan
	var err error
	for range 3 {
		if pl, err = p.survey(ctx); err == nil {
			break
		}
	}
	if err != nil {
		return err
	}
	return p.apply(ctx, pl)
}

// plan is what ensureStreams found and is to do.
type plan struct {
	reporting, page             streamSet
	migrations                  []migration
	rOwners, pOwners            []string
	createReporting, createPage bool
	existing                    map[string]jetstream.StreamConfig // the owners found, by name
}

// survey looks the streams up and decides, changing nothing.
func (p *Publisher) survey(ctx context.Context) (plan, error) {
	reporting, page := p.sets()
	migrations, err := p.planSeparation(ctx, reporting, page)
	if err != nil {
		return plan{}, err
	}
	migrated := map[string]bool{}
	for _, m := range migrations {
		migrated[m.cfg.Name] = true
	}
	existing := map[string]jetstream.StreamConfig{}
	rOwners, rCreate, rErr := p.planSet(ctx, reporting, nil, existing)
	// A stream about to drop the page subjects no longer captures any of them (planSeparation
	// checked): leave it out of the page set's look-up.
	pOwners, pCreate, pErr := p.planSet(ctx, page, migrated, existing)
	if err := errors.Join(rErr, pErr); err != nil {
		return plan{}, err
	}
	return plan{reporting: reporting, page: page, migrations: migrations, rOwners: rOwners, pOwners: pOwners,
		createReporting: rCreate, createPage: pCreate, existing: existing}, nil
}

// apply migrates and creates what the plan says, and sets the streams to publish to.
func (p *Publisher) apply(ctx context.Context, pl plan) error {
	for _, m := range pl.migrations {
		if _, err := p.js.UpdateStream(ctx, m.cfg); err != nil {
			return fmt.Errorf("attach: drop the page subjects %s from stream %s: %w", strings.Join(m.dropped, ", "), m.cfg.Name, err)
		}
		p.log.Info("moved the page subjects out of the reporting stream the daemon created; the messages it stores under them stay there",
			"stream", m.cfg.Name, "dropped", m.dropped, "subjects", m.cfg.Subjects)
	}
	rOwners, err := p.useOrCreate(ctx, pl.reporting, pl.rOwners, pl.createReporting, pl.existing)
	if err != nil {
		return err
	}
	pOwners, err := p.useOrCreate(ctx, pl.page, pl.pOwners, pl.createPage, pl.existing)
	if err != nil {
		return err
	}
	p.updateStream, p.lifecycleStream = rOwners[0], rOwners[1]
	p.agentStream, p.customerStream = pOwners[0], pOwners[1]
	return nil
}

// useOrCreate creates the set's stream when planned, else says which streams are used and warns
// about their settings.
func (p *Publisher) useOrCreate(ctx context.Context, set streamSet, owners []string, create bool,
	existing map[string]jetstream.StreamConfig) ([]string, error) {
	if create {
		return p.createStream(ctx, set)
	}
	p.log.Info("using existing streams", "subject_set", set.what, "subjects", set.patterns, "streams", owners)
	for _, name := range slices.Compact(slices.Sorted(slices.Values(owners))) {
		p.checkExisting(existing[name], set)
	}
	return owners, nil
}

// migration is the update of a stream the daemon created that drops the page subjects.
type migration struct {
	cfg     jetstream.StreamConfig // the stream's configuration after the update
	dropped []string
}

// touching lists the streams whose subjects overlap pattern.
func (p *Publisher) touching(ctx context.Context, pattern string) ([]*jetstream.StreamInfo, error) {
	l := p.js.ListStreams(ctx, jetstream.WithStreamListSubject(pattern))
	var infos []*jetstream.StreamInfo
	for info := range l.Info() {
		infos = append(infos, info)
	}
	if err := l.Err(); err != nil {
		return nil, fmt.Errorf("attach: look up the streams capturing %s: %w", pattern, err)
	}
	return infos, nil
}

// planSeparation finds the streams that capture page subjects beside reporting ones. Those the
// daemon created are to lose the page subjects (and gain the marker); if one of them is an
// operator's, or was changed so that dropping the page subjects from its list would not be
// enough, the start is refused, naming the stream, the subject and what to do.
func (p *Publisher) planSeparation(ctx context.Context, reporting, page streamSet) ([]migration, error) {
	reportingStreams := map[string]bool{}
	for _, pattern := range reporting.patterns {
		infos, err := p.touching(ctx, pattern)
		if err != nil {
			return nil, err
		}
		for _, info := range infos {
			reportingStreams[info.Config.Name] = true
		}
	}
	mixed := map[string]jetstream.StreamConfig{}
	pagesOf := map[string][]string{} // stream -> the page patterns it touches
	for _, pattern := range page.patterns {
		infos, err := p.touching(ctx, pattern)
		if err != nil {
			return nil, err
		}
		for _, info := range infos {
			if name := info.Config.Name; reportingStreams[name] {
				mixed[name] = info.Config
				pagesOf[name] = append(pagesOf[name], pattern)
			}
		}
	}
	var problems []string
	var plan []migration
	for _, name := range slices.Sorted(maps.Keys(mixed)) {
		cfg := mixed[name]
		pages := strings.Join(pagesOf[name], ", ")
		if !createdByDaemon(cfg) {
			problems = append(problems, fmt.Sprintf("stream %s (subjects %s) is not one the daemon created, and it captures the page subjects %s "+
				"beside the reporting subjects: change its subjects so that it no longer captures %s (the messages it already stores stay); "+
				"the daemon then creates %s for the page messages, or uses a stream of yours that captures %s and none of the reporting subjects",
				name, strings.Join(cfg.Subjects, ", "), pages, pages, page.create, strings.Join(page.patterns, " and ")))
			continue
		}
		kept := slices.DeleteFunc(slices.Clone(cfg.Subjects), func(s string) bool { return slices.Contains(page.patterns, s) })
		if still := overlapping(kept, page.patterns); len(still) > 0 {
			problems = append(problems, fmt.Sprintf("stream %s was created by the daemon but changed since: its subjects %s capture the page subjects %s "+
				"beside the reporting subjects, and the daemon cannot drop them without dropping reporting subjects too: "+
				"make %s capture %s only (the messages it already stores stay); the daemon then creates %s for the page messages",
				name, strings.Join(still, ", "), pages, name, strings.Join(reporting.patterns, " and "), page.create))
			continue
		}
		var dropped []string
		for _, s := range cfg.Subjects {
			if !slices.Contains(kept, s) {
				dropped = append(dropped, s)
			}
		}
		cfg.Subjects = kept
		meta := maps.Clone(cfg.Metadata)
		if meta == nil {
			meta = map[string]string{}
		}
		maps.Copy(meta, marker())
		cfg.Metadata = meta
		plan = append(plan, migration{cfg: cfg, dropped: dropped})
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("attach: the page messages may carry credentials and are kept apart from what reporting reads: %s",
			strings.Join(problems, "; "))
	}
	return plan, nil
}

// overlapping returns the stream subjects that share a subject with one of the patterns.
func overlapping(streamSubjects, patterns []string) []string {
	var out []string
	for _, s := range streamSubjects {
		for _, pattern := range patterns {
			if overlaps(strings.Split(s, "."), strings.Split(pattern, ".")) {
				out = append(out, s)
				break
			}
		}
	}
	return out
}

// overlaps reports whether some subject matches both filters.
func overlaps(a, b []string) bool {
	for i := 0; ; i++ {
		aEnd, bEnd := i >= len(a), i >= len(b)
		if aEnd || bEnd {
			return aEnd && bEnd
		}
		x, y := a[i], b[i]
		if x == ">" || y == ">" {
			return true // the other has a token here, and '>' takes it and whatever follows
		}
		if x != "*" && y != "*" && x != y {
			return false
		}
	}
}

// planSet finds, for each pattern of the set, a stream whose subjects cover it entirely (leaving
// out the streams in skip, adding the owners' configurations to existing), and says whether the
// set's stream is to be created: when no stream touches any of the patterns. Anything between all
// and none is an error.
func (p *Publisher) planSet(ctx context.Context, set streamSet, skip map[string]bool,
	existing map[string]jetstream.StreamConfig) (owners []string, create bool, err error) {
	owners, overlaps, err := p.findOwners(ctx, set, skip, existing)
	if err != nil {
		return nil, false, err
	}
	found := 0
	for _, o := range owners {
		if o != "" {
			found++
		}
	}
	switch {
	case found == len(set.patterns):
		return owners, false, nil
	case found == 0 && len(overlaps) == 0:
		return nil, true, nil
	}
	var problems []string
	for i, pattern := range set.patterns {
		if owners[i] == "" {
			problems = append(problems, pattern+" is captured by no stream")
		} else {
			problems = append(problems, pattern+" is captured by stream "+owners[i])
		}
	}
	problems = append(problems, overlaps...)
	return nil, false, fmt.Errorf("attach: the %s subjects are only partly captured by existing streams; "+
		"capture all of them or none (then %s is created): %s", set.what, set.create, strings.Join(problems, "; "))
}

// findOwners returns the stream covering each pattern of the set ("" for none), and the streams
// that overlap a pattern without covering it, leaving out the streams in skip. It adds the
// owners' configurations to existing, when not nil.
func (p *Publisher) findOwners(ctx context.Context, set streamSet, skip map[string]bool,
	existing map[string]jetstream.StreamConfig) (owners, overlaps []string, err error) {
	owners = make([]string, len(set.patterns))
	for i, pattern := range set.patterns {
		infos, err := p.touching(ctx, pattern)
		if err != nil {
			return nil, nil, err
		}
		for _, info := range infos {
			cfg := info.Config
			if skip[cfg.Name] {
				continue
			}
			subjects := cfg.Subjects
			if len(subjects) == 0 {
				subjects = []string{cfg.Name}
			}
			if !covered(pattern, subjects) {
				overlaps = append(overlaps, fmt.Sprintf("stream %s (%s) overlaps %s without capturing all of it",
					cfg.Name, strings.Join(subjects, ", "), pattern))
				continue
			}
			owners[i] = cfg.Name
			if existing != nil {
				existing[cfg.Name] = cfg
			}
		}
	}
	return owners, overlaps, nil
}

// checkExisting warns about an existing stream's settings that weaken the contract; the stream
// is used as it is all the same.
func (p *Publisher) checkExisting(cfg jetstream.StreamConfig, set streamSet) {
	if cfg.Duplicates < set.duplicates {
		p.log.Warn("existing stream deduplicates over a shorter window than configured: a re-publish after it is stored twice",
			"stream", cfg.Name, "duplicate_window", cfg.Duplicates, "configured", set.duplicates)
	}
	if cfg.NoAck {
		p.log.Warn("existing stream does not acknowledge publishes: every publish will time out", "stream", cfg.Name)
	}
	if set.what == "page" && (cfg.MaxAge == 0 || cfg.MaxAge > set.maxAge) {
		p.log.Warn("existing page stream keeps the page messages, which may carry credentials, longer than configured",
			"stream", cfg.Name, "max_age", cfg.MaxAge, "configured", set.maxAge)
	}
}

// createStream creates the set's stream and returns it as the owner of every pattern. When the
// creation fails because another daemon created it meanwhile, the stream found is used.
func (p *Publisher) createStream(ctx context.Context, set streamSet) ([]string, error) {
	sc := jetstream.StreamConfig{
		Name:        set.create,
		Description: set.description,
		Subjects:    set.patterns,
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    p.cfg.Replicas,
		Duplicates:  set.duplicates,
		Discard:     jetstream.DiscardOld,
		MaxAge:      set.maxAge,
		Metadata:    marker(),
	}
	if _, err := p.js.CreateStream(ctx, sc); err != nil {
		existing := map[string]jetstream.StreamConfig{}
		if owners, _, ferr := p.findOwners(ctx, set, nil, existing); ferr == nil && !slices.Contains(owners, "") {
			return p.useOrCreate(ctx, set, owners, false, existing)
		}
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return nil, fmt.Errorf("attach: create stream %s for %s: a stream of that name exists and captures other subjects: %w",
				sc.Name, strings.Join(sc.Subjects, ", "), err)
		}
		return nil, fmt.Errorf("attach: create stream %s for %s: %w", sc.Name, strings.Join(sc.Subjects, ", "), err)
	}
	p.log.Info("created stream", "subject_set", set.what, "stream", sc.Name, "subjects", sc.Subjects,
		"max_age", sc.MaxAge, "duplicate_window", sc.Duplicates, "replicas", sc.Replicas)
	return slices.Repeat([]string{sc.Name}, len(sc.Subjects)), nil
}

// covered reports whether every subject matching pattern is captured by one of the stream's
// subjects (a subset match: "cc.>" and "cc.*.*.attach" cover "cc.interaction.*.attach").
func covered(pattern string, streamSubjects []string) bool {
	pt := strings.Split(pattern, ".")
	for _, s := range streamSubjects {
		if subsetOf(pt, strings.Split(s, ".")) {
			return true
		}
	}
	return false
}

func subsetOf(pattern, filter []string) bool {
	for i, f := range filter {
		if f == ">" {
			return len(pattern) > i // '>' needs at least one more token
		}
		if i >= len(pattern) {
			return false
		}
		switch t := pattern[i]; {
		case t == ">":
			return false // the pattern goes on where the filter stops matching
		case f == "*":
			// matches any single token, '*' included
		case t == "*" || t != f:
			return false
		}
	}
	return len(pattern) == len(filter)
}
