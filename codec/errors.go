package codec

// Error is a decoding failure. Status is the KICK status the protocol
// prescribes for it (BAD_FRAME or FRAME_TOO_LARGE); the message is the
// KICK's reason.
type Error struct {
	Status Status
	Reason string
}

func (e *Error) Error() string { return "codec: " + e.Status.String() + ": " + e.Reason }

var (
	errBadMagic     = &Error{StatusBadFrame, "bad magic"}
	errBadVersion   = &Error{StatusBadFrame, "unknown version"}
	errBadOp        = &Error{StatusBadFrame, "unknown op"}
	errTooLarge     = &Error{StatusFrameTooLarge, "frame exceeds the maximum frame size"}
	errMetaEmptyKey = &Error{StatusBadFrame, "meta entry with an empty key"}
	errMetaOverrun  = &Error{StatusBadFrame, "meta entry runs past metaLen"}
)
