package query

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/custodylog/custody/crypto/keyring"
)

// countingOpener counts the sealed keys it is asked to open.
type countingOpener struct {
	opened int
}

func (c *countingOpener) OpenKey(id string, info, sealed []byte) ([]byte, error) {
	c.opened++
	if id == "missing" {
		return nil, &keyring.NotFoundError{ID: id}
	}
	return []byte(fmt.Sprintf("dek:%s:%s:%s", id, info, sealed)), nil
}

// TestDEKMemo: a sealed key is opened once and its data key remembered,
// under its ID, info and ciphertext together; failures are not
// remembered; the least recently used go past the bound.
func TestDEKMemo(t *testing.T) {
	memo := newDEKMemo(3)
	co := &countingOpener{}
	open := func(id, info, sealed string) []byte {
		t.Helper()
		dek, _ := memo.open(id, []byte(info), []byte(sealed), co.OpenKey)
		return dek
	}
	a := open("k1", "seg-a", "x")
	if b := open("k1", "seg-a", "x"); !bytes.Equal(a, b) || co.opened != 1 {
		t.Fatalf("the same sealed key: %q then %q, %d opens; want one", a, b, co.opened)
	}
	// Any part different is another key; and lengths are framed: "k1"+"seg-ax"
	// is not "k1"+"seg-a"+"x".
	for _, in := range [][3]string{{"k2", "seg-a", "x"}, {"k1", "seg-b", "x"}, {"k1", "seg-a", "y"}, {"k1", "seg-ax", ""}} {
		before := co.opened
		if dek := open(in[0], in[1], in[2]); co.opened != before+1 || bytes.Equal(dek, a) {
			t.Errorf("%q: %q after %d opens; want its own open", in, dek, co.opened-before)
		}
	}
	// Bound 3: of the five, the two least recently used are gone.
	if len(memo.m) != 3 || memo.lru.Len() != 3 {
		t.Fatalf("%d remembered; want 3", len(memo.m))
	}
	before := co.opened
	open("k1", "seg-a", "x")
	if co.opened != before+1 {
		t.Errorf("the least recently used key was not forgotten")
	}
	// A returned key is the caller's: changing it changes nothing kept.
	d := open("k1", "seg-a", "x")
	d[0] = 'X'
	if again := open("k1", "seg-a", "x"); again[0] == 'X' {
		t.Errorf("the memo handed out its own copy")
	}
	// A key the keyring cannot open is not remembered: asked again, it
	// is tried again, and the error is the keyring's.
	before = co.opened
	for i := 0; i < 2; i++ {
		var nf *keyring.NotFoundError
		if _, err := memo.open("missing", nil, nil, co.OpenKey); !errors.As(err, &nf) {
			t.Fatalf("a missing key: %v", err)
		}
	}
	if co.opened != before+2 {
		t.Errorf("a failed open was remembered")
	}
}
