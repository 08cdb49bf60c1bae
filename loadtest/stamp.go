package main

import "encoding/binary"

// A push sent by the generator carries a stamp at the start of its data, so
// the receiving client can tell its own pushes from others and compute the
// delivery latency:
//
//	offset size field
//	0      4    run id (random per generator run)
//	4      8    intended send time, Unix nanoseconds
//	12     4    push index within the run
//
// The rest of the data, up to -size, is padding.
const stampSize = 16

// putStamp writes a stamp into the first stampSize bytes of b.
func putStamp(b []byte, run uint32, unixNano int64, idx uint32) {
	_ = b[stampSize-1]
	binary.BigEndian.PutUint32(b[0:], run)
	binary.BigEndian.PutUint64(b[4:], uint64(unixNano))
	binary.BigEndian.PutUint32(b[12:], idx)
}

// readStamp reads the stamp at the start of b; ok is false when b is too
// short or was stamped by another run.
func readStamp(b []byte, run uint32) (unixNano int64, idx uint32, ok bool) {
	if len(b) < stampSize || binary.BigEndian.Uint32(b) != run {
		return 0, 0, false
	}
	return int64(binary.BigEndian.Uint64(b[4:])), binary.BigEndian.Uint32(b[12:]), true
}
