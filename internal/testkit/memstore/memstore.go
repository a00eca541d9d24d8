// Package memstore is an in-memory stand-in for the S3 store (Put with
// If-None-Match semantics, Get, List), for unit tests of code that writes
// and reads objects; the integration tests use MinIO.
package memstore

import (
	"bytes"
	"context"
	"io"
	"iter"
	"slices"
	"strings"
	"sync"

	"github.com/custodylog/custody/archive/store"
)

// Store holds objects by name. Safe for concurrent use; tests may read
// and change Objects directly between calls.
type Store struct {
	mu      sync.Mutex
	Objects map[string][]byte
}

// New returns an empty store.
func New() *Store { return &Store{Objects: map[string][]byte{}} }

// Put stores r under name, or fails with store.ErrExists as a conditional
// PUT does.
func (m *Store) Put(_ context.Context, name string, r io.Reader, _ int64, _ store.Lock) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.Objects[name]; ok {
		return store.ErrExists
	}
	m.Objects[name] = b
	return nil
}

// Get returns the object, or store.ErrNotFound.
func (m *Store) Get(_ context.Context, name string) (io.ReadCloser, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.Objects[name]
	if !ok {
		return nil, store.ErrNotFound
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

// List yields the objects under prefix in lexical order.
func (m *Store) List(_ context.Context, prefix string) iter.Seq2[store.Object, error] {
	m.mu.Lock()
	var objs []store.Object
	for n, b := range m.Objects {
		if strings.HasPrefix(n, prefix) {
			objs = append(objs, store.Object{Name: n, Size: int64(len(b))})
		}
	}
	m.mu.Unlock()
	slices.SortFunc(objs, func(a, b store.Object) int { return strings.Compare(a.Name, b.Name) })
	return func(yield func(store.Object, error) bool) {
		for _, o := range objs {
			if !yield(o, nil) {
				return
			}
		}
	}
}
