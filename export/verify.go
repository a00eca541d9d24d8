package export

import (
	"archive/zip"
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"os"

	"github.com/custodylog/custody/crypto/keyring"
)

// Finding kinds of Verify; docs/EXPORTS.md §3.
const (
	BadSignature = "bad-signature" // manifest.sig missing, malformed, by a key not trusted, or not verifying
	Modified     = "modified"      // a listed file whose size or SHA-256 differs, or that cannot be read
	Added        = "added"         // a file the manifest does not list
	Removed      = "removed"       // a listed file that is not in the package
	Invalid      = "invalid"       // the manifest unreadable, or a name twice in the zip
)

// Finding is one thing wrong with a package.
type Finding struct {
	Kind   string `json:"kind"`
	File   string `json:"file,omitempty"`
	Detail string `json:"detail"`
}

func (f Finding) String() string {
	if f.File == "" {
		return f.Kind + ": " + f.Detail
	}
	return f.Kind + ": " + f.File + ": " + f.Detail
}

// Result is what Verify found.
type Result struct {
	// Manifest is the package's manifest, if it parsed (whether or not
	// its signature verified).
	Manifest *Manifest `json:"manifest,omitempty"`
	// Signer is the key ID of the trusted key whose signature verified.
	Signer   string    `json:"signer,omitempty"`
	Findings []Finding `json:"findings"`
}

// Keys are the public keys a verifier trusts, by fingerprint.
type Keys map[string]Key

// Key is one trusted Ed25519 public key.
type Key struct {
	ID     string
	Public ed25519.PublicKey
}

// Add trusts pub under id.
func (k Keys) Add(id string, pub ed25519.PublicKey) { k[Fingerprint(pub)] = Key{id, pub} }

// LoadKeys reads trusted public keys from a file: PEM blocks of type
// PUBLIC KEY (PKIX, Ed25519; what `custody export pubkey` writes and
// `openssl pkey -pubout` reads), or a public keyring (its signers).
func LoadKeys(path string) (Keys, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	keys := Keys{}
	if bytes.Contains(b, []byte("-----BEGIN")) {
		for n := 1; ; n++ {
			var blk *pem.Block
			blk, b = pem.Decode(b)
			if blk == nil {
				break
			}
			if blk.Type != "PUBLIC KEY" {
				return nil, fmt.Errorf("%s: PEM block %d is a %q, not a PUBLIC KEY", path, n, blk.Type)
			}
			k, err := x509.ParsePKIXPublicKey(blk.Bytes)
			if err != nil {
				return nil, fmt.Errorf("%s: PEM block %d: %w", path, n, err)
			}
			pub, ok := k.(ed25519.PublicKey)
			if !ok {
				return nil, fmt.Errorf("%s: PEM block %d is a %T, not an Ed25519 key", path, n, k)
			}
			keys.Add("", pub) // the signature names its key ID

		}
	} else {
		kr, err := keyring.LoadPublic(path)
		if err != nil {
			return nil, fmt.Errorf("%s is neither PEM public keys nor a public keyring: %w", path, err)
		}
		for _, s := range kr.Signers() {
			keys.Add(s.ID, s.Public)
		}
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%s holds no public key", path)
	}
	return keys, nil
}

// PEM encodes a public key as LoadKeys and openssl read it, after a line
// naming it (text before a PEM block is ignored by both).
func PEM(id string, pub ed25519.PublicKey) []byte {
	der, _ := x509.MarshalPKIXPublicKey(pub) // cannot fail for an Ed25519 key
	head := fmt.Sprintf("Custody export signing key %s, %s\n", id, Fingerprint(pub))
	return append([]byte(head), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})...)
}

// maxSmallFile bounds the manifest and signature read into memory.
const maxSmallFile = 256 << 20

// Verify checks a package offline: manifest.sig is a signature by a
// trusted key over manifest.json; every file the manifest lists is in the
// zip with its size and SHA-256; no other file is. An error means the
// package could not be read as a zip at all; everything else is a finding.
func Verify(r io.ReaderAt, size int64, trusted Keys) (*Result, error) {
	zr, err := zip.NewReader(r, size)
	if err != nil {
		return nil, fmt.Errorf("not a zip file: %w", err)
	}
	res := &Result{}
	find := func(kind, file, format string, args ...any) {
		res.Findings = append(res.Findings, Finding{Kind: kind, File: file, Detail: fmt.Sprintf(format, args...)})
	}
	entries := map[string]*zip.File{}
	for _, f := range zr.File {
		if _, dup := entries[f.Name]; dup {
			// Tools differ in which of the two they show.
			find(Invalid, f.Name, "the zip holds this name more than once")
			continue
		}
		entries[f.Name] = f
	}
	read := func(name string) ([]byte, error) {
		f := entries[name]
		if f == nil {
			return nil, os.ErrNotExist
		}
		rc, err := f.Open()
		if err != nil {
			return nil, err
		}
		defer rc.Close()
		b, err := io.ReadAll(io.LimitReader(rc, maxSmallFile+1))
		if err == nil && len(b) > maxSmallFile {
			err = fmt.Errorf("larger than %d bytes", maxSmallFile)
		}
		return b, err
	}

	mb, err := read(ManifestJSON)
	if err != nil {
		find(Invalid, ManifestJSON, "cannot be read: %v", err)
		return res, nil
	}
	// The signature first: a changed manifest is named as such, whatever
	// the change did to its syntax.
	res.Signer = checkSignature(read, mb, trusted, find)
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(mb))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil || m.Format != Format {
		find(Invalid, ManifestJSON, "not a %q manifest: %v", Format, err)
		return res, nil
	}
	res.Manifest = &m

	listed := map[string]bool{ManifestJSON: true, ManifestSig: true}
	for _, lf := range m.Files {
		if listed[lf.Name] {
			find(Invalid, lf.Name, "the manifest lists this name twice, or lists itself or its signature")
			continue
		}
		listed[lf.Name] = true
		f := entries[lf.Name]
		if f == nil {
			find(Removed, lf.Name, "listed by the manifest (%d bytes) and not in the package", lf.Size)
			continue
		}
		n, sum, err := hashEntry(f)
		switch {
		case err != nil:
			find(Modified, lf.Name, "cannot be read: %v", err)
		case n != lf.Size || sum != lf.SHA256:
			find(Modified, lf.Name, "%d bytes, SHA-256 %s; the manifest lists %d bytes, SHA-256 %s", n, sum, lf.Size, lf.SHA256)
		}
	}
	for _, f := range zr.File {
		if !listed[f.Name] {
			find(Added, f.Name, "in the package and not listed by the manifest")
			listed[f.Name] = true
		}
	}
	return res, nil
}

// checkSignature checks manifest.sig over mb; it returns the signer's key
// ID, or "" after a finding.
func checkSignature(read func(string) ([]byte, error), mb []byte, trusted Keys, find func(kind, file, format string, args ...any)) string {
	sb, err := read(ManifestSig)
	if err != nil {
		find(BadSignature, ManifestSig, "cannot be read: %v", err)
		return ""
	}
	var s Signature
	dec := json.NewDecoder(bytes.NewReader(sb))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil || s.Algorithm != "ed25519" {
		find(BadSignature, ManifestSig, "not an ed25519 signature document: %v", err)
		return ""
	}
	k, ok := trusted[s.Fingerprint]
	if !ok {
		find(BadSignature, ManifestSig, "signed by key %q (%s), which is not one of the %d trusted", s.KeyID, s.Fingerprint, len(trusted))
		return ""
	}
	if !ed25519.Verify(k.Public, mb, s.Signature) {
		find(BadSignature, ManifestSig, "the signature by %s does not verify over manifest.json: one of them was changed", s.Fingerprint)
		return ""
	}
	if k.ID != "" {
		return k.ID
	}
	return s.KeyID
}

func hashEntry(f *zip.File) (int64, string, error) {
	rc, err := f.Open()
	if err != nil {
		return 0, "", err
	}
	defer rc.Close()
	h := sha256.New()
	n, err := io.Copy(h, rc)
	if err != nil {
		return n, "", err
	}
	return n, hex.EncodeToString(h.Sum(nil)), nil
}
