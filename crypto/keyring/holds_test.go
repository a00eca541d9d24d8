package keyring

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestHoldKeyring(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "holds.json")
	kr, err := LoadHolds(path, "s3cret")
	if err != nil || len(kr.Cases()) != 0 {
		t.Fatalf("a missing hold keyring: %v, %v; want empty", kr.Cases(), err)
	}
	for _, bad := range []string{"", "-x", "a/b", "a b", strings.Repeat("a", 65)} {
		if _, err := kr.Add(bad, time.Now()); err == nil {
			t.Errorf("Add(%q) accepted", bad)
		}
	}
	pub, err := kr.Add("LE-114", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	again, _ := kr.Add("LE-114", time.Now())
	if string(again.Bytes()) != string(pub.Bytes()) {
		t.Error("Add of a case already there made a new key pair")
	}
	if err := kr.Save(path); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadHolds(path, "wrong"); !errors.Is(err, ErrPassphrase) {
		t.Errorf("wrong passphrase: %v; want ErrPassphrase", err)
	}
	kr, err = LoadHolds(path, "s3cret")
	if err != nil || strings.Join(kr.Cases(), ",") != "LE-114" {
		t.Fatalf("reloaded: %v, %v", kr.Cases(), err)
	}
	// A data key sealed to the case's public key (from its encoding, as the
	// register carries it) opens with the hold keyring, under its info only.
	pk, err := ParsePublicKey(HoldKeyID("LE-114"), pub.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	dek := []byte("0123456789abcdef0123456789abcdef")
	sealed, err := pk.Seal([]byte("info"), dek)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := kr.Open("LE-114", []byte("info"), sealed); err != nil || string(got) != string(dek) {
		t.Errorf("Open = %q, %v", got, err)
	}
	if _, err := kr.Open("LE-114", []byte("other"), sealed); !errors.Is(err, ErrAuth) {
		t.Errorf("Open under other info: %v; want ErrAuth", err)
	}
	// Destroyed: the same sealed key no longer opens, and a repeat is a no-op.
	if ok, err := RemoveHold(path, "s3cret", "LE-114"); !ok || err != nil {
		t.Fatalf("RemoveHold = %t, %v", ok, err)
	}
	if ok, err := RemoveHold(path, "s3cret", "LE-114"); ok || err != nil {
		t.Errorf("second RemoveHold = %t, %v; want false, nil", ok, err)
	}
	kr, _ = LoadHolds(path, "s3cret")
	var nf *NotFoundError
	if _, err := kr.Open("LE-114", []byte("info"), sealed); !errors.As(err, &nf) {
		t.Errorf("Open after RemoveHold: %v; want NotFoundError", err)
	}
	// Like the private keyring: readable by others is refused.
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadHolds(path, "s3cret"); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("a hold keyring of mode 0644: %v", err)
	}
}

func FuzzParseHolds(f *testing.F) {
	kr := NewHolds("")
	kr.Add("LE-114", time.Date(2026, 11, 29, 0, 0, 0, 0, time.UTC))
	path := filepath.Join(f.TempDir(), "h.json")
	if err := kr.Save(path); err != nil {
		f.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		kr, err := ParseHolds(b)
		if err != nil {
			return
		}
		for _, c := range kr.Cases() {
			if ValidCase(c) != nil {
				t.Fatalf("ParseHolds accepted case %q", c)
			}
			if _, ok := kr.Public(c); !ok {
				t.Fatalf("case %q has no public key", c)
			}
		}
	})
}

// TestHoldTake: the hold keyring readers hold takes another's cases in
// place, naming what it added and removed.
func TestHoldTake(t *testing.T) {
	now := time.Date(2026, 11, 29, 5, 0, 0, 0, time.UTC)
	held, file := NewHolds(""), NewHolds("")
	if _, err := held.Add("LE-1", now); err != nil {
		t.Fatal(err)
	}
	file.Take(held)
	pk2, err := file.Add("LE-2", now)
	if err != nil {
		t.Fatal(err)
	}
	sealed, _ := pk2.Seal([]byte("info"), []byte("dek"))
	if _, err := held.Open("LE-2", []byte("info"), sealed); err == nil {
		t.Fatal("a case not yet taken opened")
	}
	next := NewHolds("")
	next.Take(file)
	next.keys = next.keys[1:] // LE-1 released
	added, removed := held.Take(next)
	if len(added) != 1 || added[0] != "LE-2" || len(removed) != 1 || removed[0] != "LE-1" {
		t.Fatalf("Take: added %v, removed %v", added, removed)
	}
	if b, err := held.Open("LE-2", []byte("info"), sealed); err != nil || string(b) != "dek" {
		t.Errorf("the new case: %q, %v", b, err)
	}
	if got := held.Cases(); len(got) != 1 || got[0] != "LE-2" {
		t.Errorf("cases %v; want [LE-2]", got)
	}
}
