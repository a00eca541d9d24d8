package query

import (
	"container/list"
	"crypto/sha256"
	"encoding/binary"
	"sync"

	"github.com/custodylog/custody/crypto/keyring"
)

// dekMemo remembers the data keys the engine has opened, by the sealed
// key each came from. Opening one (HPKE: ML-KEM-768 and X25519
// decapsulation) costs ~0.14 ms, a third of deciding a segment from a
// cached head, and a needle over 30 days opens 4,320 of them each time
// it runs. It is memory only, bounded (the least recently used go first),
// and holds nothing the process could not compute again from the private
// keyring it holds: a key the keyring drops (custody serve reloads it
// when `custody retention run` shreds) opens nothing from the memo
// either (memoKeys). Safe for concurrent use.
type dekMemo struct {
	max int

	mu  sync.Mutex
	m   map[[sha256.Size]byte]*list.Element // values *dekEntry
	lru list.List                           // front: most recently used
}

type dekEntry struct {
	key [sha256.Size]byte
	dek []byte
}

// dekMemoSize holds a year of hourly segments on 6 partitions (52,560),
// about 8 MiB.
const dekMemoSize = 65536

func newDEKMemo(max int) *dekMemo {
	return &dekMemo{max: max, m: map[[sha256.Size]byte]*list.Element{}}
}

// memoKey names a sealed key: its key ID, HPKE info and ciphertext, each
// length-prefixed so that no two inputs share a name.
func memoKey(id string, info, sealed []byte) [sha256.Size]byte {
	h := sha256.New()
	var n [8]byte
	for _, p := range [][]byte{[]byte(id), info, sealed} {
		binary.BigEndian.PutUint64(n[:], uint64(len(p)))
		h.Write(n[:])
		h.Write(p)
	}
	var k [sha256.Size]byte
	h.Sum(k[:0])
	return k
}

func (d *dekMemo) get(k [sha256.Size]byte) ([]byte, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	el, ok := d.m[k]
	if !ok {
		return nil, false
	}
	d.lru.MoveToFront(el)
	return append([]byte(nil), el.Value.(*dekEntry).dek...), true
}

func (d *dekMemo) put(k [sha256.Size]byte, dek []byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.m[k]; ok {
		return
	}
	d.m[k] = d.lru.PushFront(&dekEntry{key: k, dek: append([]byte(nil), dek...)})
	for d.lru.Len() > d.max {
		el := d.lru.Back()
		d.lru.Remove(el)
		delete(d.m, el.Value.(*dekEntry).key)
	}
}

// memoKeys is the engine's keyring with its data keys remembered.
type memoKeys struct {
	keyring.Set
	memo *dekMemo
}

// OpenKey remembers only while the keyring holds the key: one that
// custody serve dropped from its keyring (shredded) is asked of the
// keyring again, which no longer opens it.
func (k memoKeys) OpenKey(id string, info, sealed []byte) ([]byte, error) {
	if k.Set.Private == nil || !k.Set.Private.Has(id) {
		return k.Set.OpenKey(id, info, sealed)
	}
	return k.memo.open(id, info, sealed, k.Set.OpenKey)
}

// open returns the remembered data key of the sealed key, or opens it
// with open and remembers it. A failure is not remembered.
func (d *dekMemo) open(id string, info, sealed []byte, open func(id string, info, sealed []byte) ([]byte, error)) ([]byte, error) {
	mk := memoKey(id, info, sealed)
	if dek, ok := d.get(mk); ok {
		return dek, nil
	}
	dek, err := open(id, info, sealed)
	if err == nil {
		d.put(mk, dek)
	}
	return dek, err
}
