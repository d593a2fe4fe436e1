package state

import (
	"github.com/pcwatch/pcwatch/internal/resource"
	bolt "go.etcd.io/bbolt"
)

// PutLegacyDamaged writes rec under key as a version 3 record (before the
// record checksum) whose compressed metadata has one byte flipped: damage
// that only decompressing it shows. For the external tests.
func PutLegacyDamaged(s *Store, key string, rec Record) error {
	v := legacyV3(encodeRecord(key, &rec))
	got, err := decodeRecord(key, v)
	if err != nil {
		return err
	}
	got.zMeta[len(got.zMeta)/2] ^= 0x55 // aliases v
	return s.db.Update(func(tx *bolt.Tx) error { return snapshots(tx, resource.Subscriptions).Put([]byte(key), v) })
}
