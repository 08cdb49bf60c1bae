package codec

import "encoding/binary"

// MaxMetaLen is the largest meta section a header can declare.
const MaxMetaLen = 0xFFFF

// Meta is an encoded meta section: entries of klen(u8) key vlen(u16) value.
// The zero value is an empty section.
type Meta []byte

// Validate checks that m is a well-formed sequence of entries: every klen
// is at least 1 and no entry runs past the end of m.
func (m Meta) Validate() error {
	for i := 0; i < len(m); {
		klen := int(m[i])
		if klen == 0 {
			return errMetaEmptyKey
		}
		i += 1 + klen
		if i+2 > len(m) {
			return errMetaOverrun
		}
		vlen := int(binary.BigEndian.Uint16(m[i:]))
		i += 2 + vlen
		if i > len(m) {
			return errMetaOverrun
		}
	}
	return nil
}

// Get returns the value of key; when a key repeats, the last one wins.
// m must have been validated (Decode does).
func (m Meta) Get(key string) (value []byte, ok bool) {
	for i := 0; i < len(m); {
		klen := int(m[i])
		k := m[i+1 : i+1+klen]
		i += 1 + klen
		vlen := int(binary.BigEndian.Uint16(m[i:]))
		v := m[i+2 : i+2+vlen : i+2+vlen]
		i += 2 + vlen
		if string(k) == key {
			value, ok = v, true
		}
	}
	return value, ok
}

// Range calls fn for each entry in order until fn returns false.
// m must have been validated (Decode does).
func (m Meta) Range(fn func(key, value []byte) bool) {
	for i := 0; i < len(m); {
		klen := int(m[i])
		k := m[i+1 : i+1+klen]
		i += 1 + klen
		vlen := int(binary.BigEndian.Uint16(m[i:]))
		v := m[i+2 : i+2+vlen : i+2+vlen]
		i += 2 + vlen
		if !fn(k, v) {
			return
		}
	}
}

// AppendMeta appends one entry to an encoded meta section. The key must be
// 1..255 bytes and the value at most 65535; longer ones are cut to fit, so
// a caller bounds them first where that matters.
func AppendMeta(dst []byte, key string, value []byte) []byte {
	return appendMeta(dst, key, value)
}

// AppendMetaString is AppendMeta for a string value.
func AppendMetaString(dst []byte, key, value string) []byte {
	return appendMeta(dst, key, value)
}

func appendMeta[V string | []byte](dst []byte, key string, value V) []byte {
	if len(key) > 255 {
		key = key[:255]
	}
	if len(value) > 0xFFFF {
		value = value[:0xFFFF]
	}
	dst = append(dst, byte(len(key)))
	dst = append(dst, key...)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(value)))
	return append(dst, value...)
}
