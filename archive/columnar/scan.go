package columnar

import "bytes"

// member is one top-level member of a flat JSON object line: the raw
// bytes of its key (between the quotes, escapes as written) and of its
// value (as written).
type member struct{ key, value []byte }

// split cuts line into its top-level members when line has exactly the
// form {"k":v,"k":v} with no whitespace between tokens, which is the form
// of every canonical event (docs/EVENTS.md §6). It appends to dst and
// returns ok = false for anything else; such a line is stored verbatim.
//
// split does not validate the JSON inside values: it only needs their
// extent, so that concatenating the pieces gives back line byte for byte.
// That holds by construction: { then "key":value joined by , then }.
func split(dst []member, line []byte) ([]member, bool) {
	n := len(line)
	if n < 2 || line[0] != '{' || line[n-1] != '}' {
		return dst, false
	}
	if n == 2 {
		return dst, true
	}
	i := 1
	for {
		if i >= n || line[i] != '"' {
			return dst, false
		}
		ke := stringEnd(line, i)
		if ke < 0 || ke >= n || line[ke] != ':' {
			return dst, false
		}
		ve := valueEnd(line, ke+1)
		if ve < 0 || ve >= n {
			return dst, false
		}
		dst = append(dst, member{key: line[i+1 : ke-1], value: line[ke+1 : ve]})
		switch line[ve] {
		case ',':
			i = ve + 1
		case '}':
			if ve != n-1 {
				return dst, false
			}
			return dst, true
		default:
			return dst, false
		}
	}
}

// stringEnd returns the index just past the string that starts with the
// quote at b[i], or -1 when it does not end.
func stringEnd(b []byte, i int) int {
	for j := i + 1; ; {
		q := bytes.IndexByte(b[j:], '"')
		if q < 0 {
			return -1
		}
		j += q
		// The quote ends the string unless an odd number of
		// backslashes precede it.
		k := j - 1
		for k > i && b[k] == '\\' {
			k--
		}
		if (j-1-k)%2 == 0 {
			return j + 1
		}
		j++
	}
}

// valueEnd returns the index just past the value that starts at b[i]: a
// string, an object or array (brackets matched outside strings), or a
// bare token (number, true, false, null) that runs up to the next , } ].
// It returns -1 when the value does not end or is empty.
func valueEnd(b []byte, i int) int {
	if i >= len(b) {
		return -1
	}
	switch b[i] {
	case '"':
		return stringEnd(b, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				e := stringEnd(b, j)
				if e < 0 {
					return -1
				}
				j = e - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
		}
		return -1
	}
	j := i
	for j < len(b) && b[j] != ',' && b[j] != '}' && b[j] != ']' && b[j] != '"' && b[j] != '{' && b[j] != '[' {
		j++
	}
	if j == i {
		return -1
	}
	return j
}
