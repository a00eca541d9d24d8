package segment

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/custodylog/custody/crypto/keyring"
	"github.com/custodylog/custody/crypto/seal"
)

// Format v2 (docs/FORMAT.md, "Format v2"): the data key is sealed with
// HPKE to the public key of the segment's (class, period), so writers
// hold public keys only; the event times moved into the sealed index; and
// the writer signs the whole object with ed25519, so that a write-only
// archiver can check what it stored, and a planted object is told from a
// real one, without being able to read either.

// Version2 is the version byte of format v2.
const Version2 = 2

// Version3 is the version byte of format v3: v2 with a columnar body
// (docs/FORMAT.md, v3).
const Version3 = 3

// compressionColumnar is a v3 header's compression: blocks of
// zstd-compressed columns (package archive/columnar).
const compressionColumnar = "columnar"

const (
	infoBody2   = "custody segment v2 body"
	infoIndex2  = "custody segment v2 index"
	infoBloom2  = "custody segment v2 bloom"
	aadLabel2   = "custody segment v2\x00"
	hpkeLabel2  = "custody segment v2 key\x00"
	sigLabel2   = "custody segment v2 signature\x00"
	sigSize     = ed25519.SignatureSize
	maxSealedDK = 4096
)

// ErrSignature means a v2 segment's signature is missing, made by a signer
// the reader does not trust, or does not verify: the object was not
// written, as it is, by a trusted archiver.
var ErrSignature = errors.New("segment signature missing, untrusted or invalid")

// ErrNeedsPrivateKey means a v2 segment was given to a reader without the
// private keyring: a writer's public keys cannot open anything.
var ErrNeedsPrivateKey = errors.New("format v2 segment: reading it needs the private keyring")

// headerV2 is the cleartext header of format v2. Only the hour of the
// events is in clear; their first and last times are in the sealed index.
type headerV2 struct {
	Class       string    `json:"class"`
	Kind        string    `json:"kind"`
	Hour        time.Time `json:"hour"`
	Topic       string    `json:"topic"`
	Partition   int32     `json:"partition"`
	FirstOffset int64     `json:"first_offset"`
	LastOffset  int64     `json:"last_offset"`
	Count       int64     `json:"count"`
	// Kinds: format v3 only, when Kind is empty (Meta.Kinds).
	Kinds       map[string]int64 `json:"kinds,omitempty"`
	KeyID       string           `json:"key_id"`
	SealedKey   []byte           `json:"sealed_key"`
	NoncePrefix []byte           `json:"nonce_prefix"`
	ChunkSize   int              `json:"chunk_size"`
	Compression string           `json:"compression"`
	Signer      string           `json:"signer"`
	version     byte             // from the preamble: Version2 or Version3
}

func (h *headerV2) header() *Header {
	return &Header{
		Meta:  Meta{Class: h.Class, Kind: h.Kind, Hour: h.Hour, Topic: h.Topic, Partition: h.Partition, FirstOffset: h.FirstOffset, LastOffset: h.LastOffset, Count: h.Count, Kinds: h.Kinds},
		KeyID: h.KeyID, NoncePrefix: h.NoncePrefix, ChunkSize: h.ChunkSize, Compression: h.Compression,
		Version: int(h.version), SealedKey: h.SealedKey, Signer: h.Signer,
	}
}

// validate checks what v1's Header.Validate checks, but the event times.
func (h *headerV2) validate() error {
	c := h.header()
	// Times are checked against the index once it is open; a stand-in
	// within the hour lets the rest of the checks run here.
	c.MinTime, c.MaxTime = c.Hour, c.Hour
	c.WrappedKey = make([]byte, keyring.WrappedSize)
	// v1's check wants zstd; v3's body is columnar.
	want := compressionZst
	if h.version == Version3 {
		want = compressionColumnar
	}
	if h.Compression != want {
		return fmt.Errorf("compression %q is not %s (format v%d)", h.Compression, want, h.version)
	}
	c.Compression = compressionZst
	if err := c.Validate(); err != nil {
		return err
	}
	switch {
	case len(h.SealedKey) == 0 || len(h.SealedKey) > maxSealedDK:
		return fmt.Errorf("sealed_key is %d bytes", len(h.SealedKey))
	case h.Signer == "":
		return errors.New("signer is empty")
	}
	return nil
}

// hpkeInfo binds a sealed data key to the format, the key and the object.
func hpkeInfo(keyID, name string) []byte {
	return []byte(hpkeLabel2 + keyID + "\x00" + name)
}

func deriveKeysV2(dek []byte) (segKeys, error) {
	return deriveKeysWith(dek, infoBody2, infoIndex2, infoBloom2)
}

func associatedDataV2(name string, header []byte) []byte {
	return associatedDataWith(aadLabel2, name, header)
}

// signedMessage is what the ed25519 signature covers: a label, the object
// name, and the SHA-256 of every object byte before the signature.
func signedMessage(name string, digest []byte) []byte {
	m := make([]byte, 0, len(sigLabel2)+4+len(name)+len(digest))
	m = append(m, sigLabel2...)
	m = binary.BigEndian.AppendUint32(m, uint32(len(name)))
	m = append(m, name...)
	return append(m, digest...)
}

// hashWriter passes writes through and hashes them.
type hashWriter struct {
	w io.Writer
	h hash.Hash
}

func (hw *hashWriter) Write(p []byte) (int, error) {
	n, err := hw.w.Write(p)
	hw.h.Write(p[:n])
	return n, err
}

// NewWriterV2 writes a v2 segment to dst: the header and sealed index now,
// the body through the returned Writer, the signature at Close. The data
// key and nonce prefix are fresh from crypto/rand for every call, so every
// upload attempt seals under its own key.
func NewWriterV2(dst io.Writer, m Meta, ix *IndexBuilder, pub keyring.PublicKey, signer keyring.SigningKey) (*Writer, error) {
	return newWriterV2(dst, m, ix, pub, signer, Version2)
}

// NewWriterV3 writes a v3 segment: as NewWriterV2, with the body in
// columnar blocks. Write still takes canonical JSON lines; the Writer
// holds up to a block of them (BlockBytes) before it encodes and seals
// them.
func NewWriterV3(dst io.Writer, m Meta, ix *IndexBuilder, pub keyring.PublicKey, signer keyring.SigningKey) (*Writer, error) {
	return newWriterV2(dst, m, ix, pub, signer, Version3)
}

func newWriterV2(dst io.Writer, m Meta, ix *IndexBuilder, pub keyring.PublicKey, signer keyring.SigningKey, version byte) (*Writer, error) {
	m.Hour, m.MinTime, m.MaxTime = m.Hour.UTC(), m.MinTime.UTC(), m.MaxTime.UTC()
	if err := (&Header{Meta: m, KeyID: pub.ID, WrappedKey: make([]byte, keyring.WrappedSize), NoncePrefix: make([]byte, seal.NoncePrefixSize), ChunkSize: seal.ChunkSize, Compression: compressionZst, Version: int(version)}).Validate(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrHeader, err)
	}
	name := Name(&m)
	dek := make([]byte, keyring.KeySize)
	var prefix [seal.NoncePrefixSize]byte
	if _, err := rand.Read(dek); err != nil {
		return nil, err
	}
	if _, err := rand.Read(prefix[:]); err != nil {
		return nil, err
	}
	sealed, err := pub.Seal(hpkeInfo(pub.ID, name), dek)
	if err != nil {
		return nil, fmt.Errorf("segment %s: cannot seal the data key to %s: %w", name, pub.ID, err)
	}
	h := headerV2{Class: m.Class, Kind: m.Kind, Hour: m.Hour, Topic: m.Topic, Partition: m.Partition, FirstOffset: m.FirstOffset,
		LastOffset: m.LastOffset, Count: m.Count, Kinds: m.Kinds, KeyID: pub.ID, SealedKey: sealed, NoncePrefix: prefix[:],
		ChunkSize: seal.ChunkSize, Compression: compressionZst, Signer: signer.ID}
	if version == Version3 {
		h.Compression = compressionColumnar
	}
	hb, err := json.Marshal(&h)
	if err != nil {
		return nil, err
	}
	if len(hb) > maxHeaderSize {
		return nil, fmt.Errorf("segment %s: %w: %d bytes exceeds %d", name, ErrHeader, len(hb), maxHeaderSize)
	}
	head := append([]byte(Magic), version)
	head = binary.BigEndian.AppendUint32(head, uint32(len(hb)))
	head = append(head, hb...)
	keys, err := deriveKeysV2(dek)
	if err != nil {
		return nil, err
	}
	aad := associatedDataV2(name, head)
	ia, err := indexAEAD(keys.index)
	if err != nil {
		return nil, err
	}
	if ix == nil {
		ix = NewIndexBuilder()
	}
	// The index key seals this one message only, so a zero nonce is safe.
	sealedIndex := ia.Seal(nil, make([]byte, ia.NonceSize()), ix.encodeV2(keys.bloom, m.MinTime, m.MaxTime), aad)
	if len(sealedIndex) > maxIndexSize {
		return nil, fmt.Errorf("segment %s: index of %d bytes exceeds %d", name, len(sealedIndex), maxIndexSize)
	}
	hw := &hashWriter{w: dst, h: sha256.New()}
	head = binary.BigEndian.AppendUint32(head, uint32(len(sealedIndex)))
	if _, err := hw.Write(append(head, sealedIndex...)); err != nil {
		return nil, fmt.Errorf("cannot write segment %s: %w", name, err)
	}
	sw, err := seal.NewWriter(hw, keys.body, prefix, aad)
	if err != nil {
		return nil, err
	}
	w := &Writer{name: name, meta: m, sw: sw, sha: sha256.New()}
	if version == Version3 {
		w.cw = newColumnWriter(sw)
	} else {
		w.zw = encoders.Get().(*zstd.Encoder)
		w.zw.Reset(sw)
	}
	w.sign = func() error {
		sig := signer.Sign(signedMessage(name, hw.h.Sum(nil)))
		if _, err := dst.Write(sig); err != nil {
			return fmt.Errorf("cannot write segment %s: %w", name, err)
		}
		return nil
	}
	return w, nil
}

// sigReader passes its source through but for the last sigSize bytes,
// which it keeps in tail once the source ends, and hashes what it passes.
type sigReader struct {
	hb *holdback
	h  hash.Hash
}

func newSigReader(src io.Reader, pre []byte) *sigReader {
	s := &sigReader{hb: &holdback{r: src, keep: sigSize}, h: sha256.New()}
	s.h.Write(pre)
	return s
}

func (s *sigReader) Read(p []byte) (int, error) {
	n, err := s.hb.Read(p)
	s.h.Write(p[:n])
	return n, err
}

// verify checks the signature once the source is exhausted.
func (s *sigReader) verify(name, signer string, ks any) error {
	if len(s.hb.tail) != sigSize {
		return fmt.Errorf("%w: no signature at the end", ErrSignature)
	}
	v, ok := ks.(signers)
	if !ok {
		return fmt.Errorf("%w: no trusted signers given", ErrSignature)
	}
	pub, ok := v.Signer(signer)
	if !ok {
		return fmt.Errorf("%w: signer %q is not in the public keyring", ErrSignature, signer)
	}
	if !ed25519.Verify(pub, signedMessage(name, s.h.Sum(nil)), s.hb.tail) {
		return ErrSignature
	}
	return nil
}

// signers resolves signer IDs; *keyring.PublicKeyring is one.
type signers interface {
	Signer(id string) (ed25519.PublicKey, bool)
}

// opener opens v2 data keys; *keyring.PrivateKeyring is one.
type opener interface {
	OpenKey(id string, info, sealed []byte) ([]byte, error)
}

// readHeaderV2 reads the v2 header after the preamble pre from r.
func readHeaderV2(pre []byte, r io.Reader) (*headerV2, []byte, error) {
	n := binary.BigEndian.Uint32(pre[len(Magic)+1:])
	if n == 0 || n > maxHeaderSize {
		return nil, nil, fmt.Errorf("%w: length %d outside 1-%d", ErrHeader, n, maxHeaderSize)
	}
	hb := make([]byte, n)
	if _, err := io.ReadFull(r, hb); err != nil {
		return nil, nil, fmt.Errorf("%w: object ends inside the header", ErrTruncated)
	}
	dec := json.NewDecoder(bytes.NewReader(hb))
	dec.DisallowUnknownFields()
	h := headerV2{version: pre[len(Magic)]}
	if err := dec.Decode(&h); err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrHeader, err)
	}
	if dec.More() {
		return nil, nil, fmt.Errorf("%w: data after the JSON object", ErrHeader)
	}
	if err := h.validate(); err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrHeader, err)
	}
	if want := h.Hour.UTC().Format(time.RFC3339Nano); !bytes.Contains(hb, []byte(`"hour":"`+want+`"`)) {
		return nil, nil, fmt.Errorf("%w: hour is not spelt %q (UTC, Z, no trailing zeros)", ErrHeader, want)
	}
	return &h, hb, nil
}

// openV2 is open for a v2 object whose preamble pre was read from src.
func openV2(pre []byte, src io.Reader, name string, ks any, opts ReaderOptions) (*Reader, error) {
	sr := newSigReader(src, pre)
	h, hb, err := readHeaderV2(pre, sr)
	if err != nil {
		return nil, err
	}
	hdr := h.header()
	if Name(&hdr.Meta) != name {
		return nil, ErrName
	}
	op, ok := ks.(opener)
	if !ok || op == nil {
		return nil, ErrNeedsPrivateKey
	}
	dek, err := op.OpenKey(h.KeyID, hpkeInfo(h.KeyID, name), h.SealedKey)
	if errors.Is(err, keyring.ErrNoPrivateKeyring) {
		return nil, ErrNeedsPrivateKey
	}
	if err != nil {
		var nf *keyring.NotFoundError
		if errors.As(err, &nf) {
			return nil, err
		}
		return nil, ErrAuth
	}
	k, err := deriveKeysV2(dek)
	if err != nil {
		return nil, err
	}
	header := append(append([]byte(nil), pre...), hb...)
	aad := associatedDataV2(name, header)
	ix, err := readIndex(sr, k, aad)
	if err != nil {
		return nil, err
	}
	hdr.MinTime, hdr.MaxTime = ix.MinTime, ix.MaxTime
	if hdr.MinTime.Before(hdr.Hour) || hdr.MaxTime.Before(hdr.MinTime) || !hdr.MaxTime.Before(hdr.Hour.Add(time.Hour)) {
		return nil, fmt.Errorf("%w: index times %s-%s fall outside hour %s", ErrMismatch, hdr.MinTime, hdr.MaxTime, hdr.Hour)
	}
	return &Reader{name: name, h: hdr, ix: ix, src: sr, keys: k, aad: aad, opts: opts, sig: sr, sigKeys: ks}, nil
}

// readIndex reads, opens and decodes the sealed index (v1 and v2).
func readIndex(src io.Reader, k segKeys, aad []byte) (*Index, error) {
	var lb [4]byte
	if _, err := io.ReadFull(src, lb[:]); err != nil {
		return nil, fmt.Errorf("%w: object ends before the index", ErrTruncated)
	}
	n := binary.BigEndian.Uint32(lb[:])
	if n > maxIndexSize {
		return nil, fmt.Errorf("%w: index length %d exceeds %d", ErrHeader, n, maxIndexSize)
	}
	sealed := make([]byte, n)
	if _, err := io.ReadFull(src, sealed); err != nil {
		return nil, fmt.Errorf("%w: object ends inside the index", ErrTruncated)
	}
	ia, err := indexAEAD(k.index)
	if err != nil {
		return nil, err
	}
	// In place: the index is opened into the bytes it was sealed in,
	// which nothing else holds (one allocation of its size, not two).
	plain, err := ia.Open(sealed[:0], make([]byte, ia.NonceSize()), sealed, aad)
	if err != nil {
		return nil, ErrAuth
	}
	ix, err := decodeIndex(plain, k.bloom)
	if err != nil {
		// Authenticated yet malformed: the writer was broken, not an attacker.
		return nil, fmt.Errorf("%w: %v", ErrMismatch, err)
	}
	return ix, nil
}

// Verify reads a whole v2 segment without opening it and checks its
// signature against the trusted signers: what a write-only archiver can
// know about a stored object. It returns the header, whose offsets and
// count the signature vouches for (the event times stay sealed and are
// zero). A v1 segment gives ErrVersion1: only a v1 keyring can check it.
func Verify(src io.Reader, name string, trusted signers) (*Header, error) {
	h, err := verify(src, name, trusted)
	if err != nil {
		return nil, fmt.Errorf("segment %s: %w", name, err)
	}
	return h, nil
}

// ErrVersion1 is Verify's answer for a v1 segment.
var ErrVersion1 = errors.New("format v1 segment: it carries no signature; check it with the v1 keyring")

func verify(src io.Reader, name string, trusted signers) (*Header, error) {
	var pre [preambleSize]byte
	if n, err := io.ReadFull(src, pre[:]); err != nil {
		if n >= len(Magic) && string(pre[:len(Magic)]) != Magic {
			return nil, ErrNotSegment
		}
		return nil, fmt.Errorf("%w: %d-byte object ends inside the preamble", ErrTruncated, n)
	}
	if string(pre[:len(Magic)]) != Magic {
		return nil, ErrNotSegment
	}
	switch pre[len(Magic)] {
	case Version2, Version3:
	case Version:
		return nil, ErrVersion1
	default:
		return nil, fmt.Errorf("%w %d", ErrVersion, pre[len(Magic)])
	}
	sr := newSigReader(src, pre[:])
	h, _, err := readHeaderV2(pre[:], sr)
	if err != nil {
		return nil, err
	}
	hdr := h.header()
	if Name(&hdr.Meta) != name {
		return nil, ErrName
	}
	if _, err := io.Copy(io.Discard, sr); err != nil {
		return nil, err
	}
	if err := sr.verify(name, h.Signer, trusted); err != nil {
		return nil, err
	}
	return hdr, nil
}
