// Package signed encodes the small signed documents Custody leaves in the
// bucket (shred receipts, hold records, hold release receipts): the
// payload JSON on one line, then a line {"signer":…,"signature":…} whose
// Ed25519 signature covers the document's label ‖ 0x00 ‖ the first line's
// bytes. The label keeps a signature over one kind of document from being
// passed off as another. docs/RETENTION.md §2 and docs/HOLDS.md describe
// each kind.
package signed

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/custodylog/custody/crypto/keyring"
)

// ErrSignature marks a document whose signature is missing, malformed, by
// an untrusted signer or does not verify; other errors are malformed
// payloads.
var ErrSignature = errors.New("signature does not verify")

type sigLine struct {
	Signer    string `json:"signer"`
	Signature string `json:"signature"`
}

func message(label string, payload []byte) []byte {
	return append(append([]byte(label), 0), payload...)
}

// Encode signs payload (marshalled as JSON) under label.
func Encode(label string, payload any, sk keyring.SigningKey) ([]byte, error) {
	p, err := json.Marshal(payload)
	if err != nil {
		return nil, err
	}
	sig, err := json.Marshal(sigLine{sk.ID, base64.StdEncoding.EncodeToString(sk.Sign(message(label, p)))})
	if err != nil {
		return nil, err
	}
	return append(append(append(p, '\n'), sig...), '\n'), nil
}

// signers resolves trusted signer IDs; *keyring.PublicKeyring is one.
type signers interface {
	Signer(id string) (ed25519.PublicKey, bool)
}

// Decode checks b's signature under label against the trusted signers,
// then decodes the payload into out. It returns the signer's ID.
func Decode(b []byte, label string, trusted signers, out any) (string, error) {
	lines := bytes.SplitN(bytes.TrimSuffix(b, []byte("\n")), []byte("\n"), 2)
	if len(lines) != 2 {
		return "", fmt.Errorf("%w: not two lines (payload, signature)", ErrSignature)
	}
	var s sigLine
	if err := json.Unmarshal(lines[1], &s); err != nil {
		return "", fmt.Errorf("%w: signature line: %v", ErrSignature, err)
	}
	sig, err := base64.StdEncoding.DecodeString(s.Signature)
	pub, ok := trusted.Signer(s.Signer)
	if err != nil || !ok || !ed25519.Verify(pub, message(label, lines[0]), sig) {
		return "", fmt.Errorf("%w: signature by %q", ErrSignature, s.Signer)
	}
	if err := json.Unmarshal(lines[0], out); err != nil {
		return "", fmt.Errorf("payload: %w", err)
	}
	return s.Signer, nil
}
