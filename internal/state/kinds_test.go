package state

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"slices"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/pcwatch/pcwatch/internal/resource"
)

// olderRelease rewrites the file at path as a release that knew only the
// kinds named would have left it: the other kinds' buckets are gone and the
// metadata records the kinds given (none: the key is absent, as in files
// written before kinds were recorded).
func olderRelease(t *testing.T, path string, recorded []string, drop ...*resource.Kind) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		for _, k := range drop {
			if err := tx.DeleteBucket([]byte(k.Bucket())); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bMeta)
		if recorded == nil {
			return meta.Delete(metaKinds)
		}
		v, _ := json.Marshal(recorded)
		return meta.Put(metaKinds, v)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// bucketsOf lists the top-level buckets of the file and the kinds its
// metadata records, reading it with bbolt alone.
func bucketsOf(t *testing.T, path string) (buckets, recorded []string) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	_ = db.View(func(tx *bolt.Tx) error {
		_ = tx.ForEach(func(name []byte, _ *bolt.Bucket) error { buckets = append(buckets, string(name)); return nil })
		if v := tx.Bucket(bMeta).Get(metaKinds); v != nil {
			_ = json.Unmarshal(v, &recorded)
		}
		return nil
	})
	return buckets, recorded
}

// A file written by a release that knew fewer kinds opens: read-only it
// reads the missing kinds as empty and writes nothing; read-write it gains
// their buckets, records them, keeps every record, and takes writes of
// them — the path by which the next kinds (admin relationships, audit
// records) arrive without a schema change.
func TestOpenAddsTheKindsAddedSinceTheFileWasWritten(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)
	rec := Record{Hash: HashOf([]byte(`{"id":"s1"}`)), FirstSeen: now, Updated: now, Raw: []byte(`{"id":"s1"}`)}
	if err := s.Commit(&Change{Puts: []Put{{resource.Subscriptions, "c1/s1", rec}}}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	// Two kinds "did not exist yet".
	newKinds := []*resource.Kind{resource.ManagedServices, resource.Products}
	olderRelease(t, path, []string{resource.Customers.Bucket(), resource.Subscriptions.Bucket()}, newKinds...)
	before, _ := bucketsOf(t, path)

	ro, err := Open(path, Options{ReadOnly: true})
	if err != nil {
		t.Fatalf("read-only open of an older release's file: %v", err)
	}
	c, err := ro.Counts()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range newKinds {
		if c.Records[k] != 0 {
			t.Errorf("read-only: %d %s, want 0", c.Records[k], k)
		}
		if err := ro.View(func(r *ReadTx) error {
			if _, ok, err := r.Get(k, "c1/x"); ok || err != nil {
				t.Errorf("read-only Get of %s: ok %v, err %v", k, ok, err)
			}
			return r.ForEach(k, func(string, Record) error { t.Errorf("a record of %s", k); return nil })
		}); err != nil {
			t.Error(err)
		}
	}
	ro.Close()
	if after, _ := bucketsOf(t, path); !slices.Equal(before, after) {
		t.Fatalf("a read-only open changed the buckets: %q -> %q", before, after)
	}

	s, err = Open(path, Options{})
	if err != nil {
		t.Fatalf("open of an older release's file: %v", err)
	}
	checkInvariants(t, s)
	ms := Record{Hash: HashOf([]byte(`{"id":"m1"}`)), FirstSeen: now, Updated: now, Raw: []byte(`{"id":"m1"}`)}
	if err := s.Commit(&Change{Puts: []Put{{resource.ManagedServices, "c1/m1", ms}}}); err != nil {
		t.Fatalf("writing a kind added since: %v", err)
	}
	err = s.View(func(r *ReadTx) error {
		if _, ok, err := r.Get(resource.Subscriptions, "c1/s1"); !ok || err != nil {
			t.Errorf("the older release's record: ok %v, err %v", ok, err)
		}
		if _, ok, err := r.Get(resource.ManagedServices, "c1/m1"); !ok || err != nil {
			t.Errorf("the new kind's record: ok %v, err %v", ok, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	buckets, recorded := bucketsOf(t, path)
	for _, k := range resource.All() {
		if !slices.Contains(buckets, k.Bucket()) || !slices.Contains(recorded, k.Bucket()) {
			t.Errorf("%s: bucket present %v, recorded %v (recorded %q)", k, slices.Contains(buckets, k.Bucket()), slices.Contains(recorded, k.Bucket()), recorded)
		}
	}
}

// What the kinds record protects: a bucket the file says it has (or, in a
// file written before kinds were recorded, one of the four kinds of that
// time) that is gone was lost, not never made, and is refused untouched;
// a kind of a later release is left alone.
func TestOpenKindsRecord(t *testing.T) {
	later := "adminrelationships-of-a-later-release"
	tests := []struct {
		name     string
		recorded []string // nil: no record (a file of the first releases)
		drop     []*resource.Kind
		extra    string // a bucket of a later release's kind, recorded
		wantErr  error
	}{
		{name: "first releases' file, all four kinds", recorded: nil},
		{name: "first releases' file lost a bucket", recorded: nil, drop: []*resource.Kind{resource.Products}, wantErr: ErrCorrupt},
		{name: "recorded bucket lost", recorded: []string{"customers", "subscriptions", "managedservices", "products"}, drop: []*resource.Kind{resource.ManagedServices}, wantErr: ErrCorrupt},
		{name: "record that does not decode", recorded: []string{""}, wantErr: ErrCorrupt},
		{name: "a later release's kind", recorded: []string{"customers", "subscriptions", "managedservices", "products", later}, extra: later},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), FileName)
			s, err := Open(path, Options{})
			if err != nil {
				t.Fatal(err)
			}
			s.Close()
			olderRelease(t, path, tt.recorded, tt.drop...)
			if tt.extra != "" {
				db, err := bolt.Open(path, 0o600, nil)
				if err != nil {
					t.Fatal(err)
				}
				if err := db.Update(func(tx *bolt.Tx) error {
					b, err := tx.CreateBucket([]byte(tt.extra))
					if err != nil {
						return err
					}
					return b.Put([]byte("t1/r1"), []byte("a later release's record"))
				}); err != nil {
					t.Fatal(err)
				}
				db.Close()
			}
			before, _ := bucketsOf(t, path)
			s, err = Open(path, Options{})
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Open = %v, want %v", err, tt.wantErr)
				}
				if after, _ := bucketsOf(t, path); !slices.Equal(before, after) {
					t.Errorf("a refused file was changed: %q -> %q", before, after)
				}
				return
			}
			if err != nil {
				t.Fatalf("Open = %v", err)
			}
			checkInvariants(t, s)
			s.Close()
			buckets, recorded := bucketsOf(t, path)
			if tt.extra != "" && (!slices.Contains(buckets, tt.extra) || !slices.Contains(recorded, tt.extra)) {
				t.Errorf("the later release's kind was dropped: buckets %q, recorded %q", buckets, recorded)
			}
			if tt.recorded == nil {
				// Opening a sound file of the kinds this build knows
				// writes nothing: the first releases' four are implied.
				if recorded != nil {
					t.Errorf("opening a first releases' file wrote a kinds record: %q", recorded)
				}
				return
			}
			for _, k := range resource.All() {
				if !slices.Contains(recorded, k.Bucket()) {
					t.Errorf("%s not recorded: %q", k, recorded)
				}
			}
		})
	}
}
